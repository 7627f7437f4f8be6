//! Unit tests of location parsing and opening: which words name which store, and that a read
//! never creates a store.

use crate::{open, AnyStore, LocationError, OpenError, StoreLocation};

#[test]
fn a_postgres_url_names_the_server_and_anything_else_without_a_scheme_a_directory() {
    for url in ["postgres://u:secret@db/w", "postgresql://db/w"] {
        let location = StoreLocation::parse(url).expect("a PostgreSQL URL");
        assert!(matches!(location, StoreLocation::Postgres(_)));
        assert!(!location.display().contains("secret"), "{}", location.display());
    }
    assert!(matches!(StoreLocation::parse("./.waypoint"), Ok(StoreLocation::Dir(_))));
    assert!(matches!(StoreLocation::parse("dir with spaces"), Ok(StoreLocation::Dir(_))));
}

#[test]
fn an_empty_location_or_another_scheme_is_refused_with_a_stable_code() {
    assert_eq!(StoreLocation::parse("").unwrap_err(), LocationError::Empty);
    assert_eq!(StoreLocation::parse("").unwrap_err().code(), "invalid_store");
    let error = StoreLocation::parse("s3://bucket/store").unwrap_err();
    assert_eq!(error, LocationError::UnsupportedScheme { scheme: "s3".to_owned() });
    assert_eq!(error.code(), "unsupported_store");
    assert!(matches!(open("redis://x"), Err(OpenError::Location(LocationError::UnsupportedScheme { .. }))));
}

#[test]
fn a_read_does_not_create_a_store_and_a_write_does() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let dir = scratch.path().join("store");
    let location = StoreLocation::parse(dir.to_str().expect("a UTF-8 path")).expect("a directory");
    assert!(location.open_read_only_if_present().expect("no store is not an error").is_none());
    assert!(!dir.exists());
    assert!(matches!(location.open(), Ok(AnyStore::File(_))));
    assert!(matches!(location.open_read_only_if_present(), Ok(Some(AnyStore::File(_)))));
}

#[test]
fn a_file_where_the_store_should_be_is_not_a_directory() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let file = scratch.path().join("plain-file");
    std::fs::write(&file, b"not a store").expect("a file");
    let location = StoreLocation::Dir(file);
    assert!(matches!(location.open_read_only_if_present(), Err(OpenError::NotADirectory { .. })));
    assert!(matches!(location.open(), Err(OpenError::File { .. })));
}

#[test]
fn control_characters_in_a_path_are_escaped_when_shown() {
    let location = StoreLocation::parse("bad\nname").expect("a directory");
    assert_eq!(location.display(), "bad\\nname");
}
