//! Queue names and submitted definitions: the allow-list and the size limit.

use super::*;

#[test]
fn queue_names_follow_the_plan_id_rules_and_say_they_are_queue_names() {
    assert_eq!(QueueName::parse("builds-2").unwrap().as_str(), "builds-2");
    let error = QueueName::parse("a/b").unwrap_err();
    assert!(error.to_string().starts_with("queue name"), "{error}");
    assert!(matches!(QueueName::parse(""), Err(InvalidValue::Empty { kind: "queue name" })));
    assert!(QueueName::parse(&"q".repeat(65)).is_err());
}

#[test]
fn a_definition_above_the_limit_is_refused() {
    let big = "x".repeat(MAX_DEFINITION_BYTES + 1);
    assert!(SubmittedDefinition::new("plan_file", big, "p.toml".into()).is_err());
    assert!(SubmittedDefinition::new("plan_file", "name = 'x'".into(), "p.toml".into()).is_ok());
}
