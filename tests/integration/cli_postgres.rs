//! The `waypoint` binary on a PostgreSQL store (`--store postgres://…`), against the throwaway
//! server `cargo xtask test` starts: the plumbing, a plan file run and its resume, the operator's
//! commands, an unreachable server, and a password that never appears in any output.

use waypoint_store_postgres::testing::TestDatabase;

use super::cli_harness::{waypoint_bin, Run, Sandbox};

const PASSWORD: &str = "s3cret-Pw";

/// The test database's URL with a password in it; the test server trusts local connections, so
/// the password is carried but never checked, which is what lets us look for it in every output.
fn url_with_password(db: &TestDatabase) -> String {
    db.url().replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

fn run(sandbox: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    let run = sandbox.run(&all);
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "the password leaked in `{}`:\n{}\n{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

#[test]
fn plumbing_reads_and_the_operator_commands_work_on_postgres_without_showing_the_password() {
    let db = TestDatabase::create("cli_plumbing");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    for args in [
        vec!["plan", "create", "--id", "pg-plan", "--total-steps", "3"],
        vec!["plan", "start", "pg-plan", "--phase", "strategize"],
        vec!["plan", "step-started", "pg-plan", "--step", "1", "--decision", "d1"],
        vec!["plan", "checkpoint", "pg-plan", "--step", "1", "--decision", "d1"],
        vec!["plan", "interrupt", "pg-plan", "--reason", "deploy"],
    ] {
        run(&sandbox, &url, &args).expect_code(0);
    }
    let listed = run(&sandbox, &url, &["plan", "list", "--resumable"]).json();
    assert_eq!(listed["plans"][0]["plan_id"], "pg-plan", "{listed}");
    let preview = run(&sandbox, &url, &["plan", "resume", "pg-plan", "--dry-run"]).json();
    assert_eq!(preview["next_step"], 2, "{preview}");
    let history = run(&sandbox, &url, &["plan", "history", "pg-plan"]).json();
    assert_eq!(history["events"].as_array().map(Vec::len), Some(5), "{history}");
    let verify = run(&sandbox, &url, &["store", "verify"]).json();
    assert_eq!(verify["ok"], true, "{verify}");
    let stats = run(&sandbox, &url, &["store", "stats"]).json();
    assert_eq!((stats["plans"].as_u64(), stats["events"].as_u64()), (Some(1), Some(5)), "{stats}");
    run(&sandbox, &url, &["store", "repair"]).expect_error(2, "unsupported_store");
    let resumed = run(&sandbox, &url, &["plan", "resume", "pg-plan"]).json();
    assert_eq!(resumed["resumed"]["from_step"], 2, "{resumed}");
    // The same store through `$WAYPOINT_STORE`.
    let output = std::process::Command::new(waypoint_bin())
        .args(["--format", "json", "plan", "show", "pg-plan"])
        .env("WAYPOINT_STORE", &url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let shown = Run::from_output(output);
    shown.expect_code(0);
    assert_eq!(shown.json()["plan_id"], "pg-plan");
    assert!(!shown.stdout.contains(PASSWORD) && !shown.stderr.contains(PASSWORD));
}

#[test]
fn a_plan_file_runs_on_postgres_and_running_it_again_continues_it() {
    let db = TestDatabase::create("cli_run");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"pg\"\n\n[[steps]]\nname = \"one\"\nrun = \"echo 1 >> one.txt\"\n\n\
         [[steps]]\nname = \"two\"\nrun = \"echo 2 >> two.txt\"\n",
    );
    let first = run(&sandbox, &url, &["run", plan.to_str().unwrap()]);
    first.expect_code(0);
    assert_eq!(first.json()["summary"]["status"], "completed", "{}", first.stdout);
    let again = run(&sandbox, &url, &["run", plan.to_str().unwrap()]);
    again.expect_code(0);
    assert_eq!(sandbox.read("one.txt"), "1\n", "a completed plan file does not run again");
}

#[test]
fn an_unreachable_server_is_exit_6_store_unavailable_naming_where_but_not_the_password() {
    let sandbox = Sandbox::new();
    // Port 1 on loopback: nothing listens there.
    let url = format!("postgres://waypoint:{PASSWORD}@127.0.0.1:1/waypoint");
    for args in [vec!["plan", "list"], vec!["plan", "create"], vec!["store", "verify"]] {
        let error = run(&sandbox, &url, &args).expect_error(6, "store_unavailable");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.1") && message.contains('1'), "{message}");
    }
}

#[test]
fn step_logs_live_in_the_database_and_any_home_reads_them() {
    let db = TestDatabase::create("cli_logs");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    let plan = sandbox
        .write("plan.toml", "name = \"talks\"\n[[steps]]\nname = \"say\"\nrun = \"echo hello; echo oops >&2\"\n");
    let ran = run(&sandbox, &url, &["run", plan.to_str().unwrap()]);
    ran.expect_code(0);
    let id = ran.json()["plan_id"].as_str().unwrap().to_owned();
    // Another machine: another HOME and no XDG state folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(waypoint_bin())
        .args(["--format", "json", "plan", "logs", &id])
        .env("WAYPOINT_STORE", &url)
        .env("HOME", elsewhere.path())
        .env_remove("XDG_STATE_HOME")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let logs = Run::from_output(output);
    logs.expect_code(0);
    let doc = logs.json();
    assert_eq!(doc["logs"][0]["stdout"], "hello\n", "{doc}");
    assert_eq!(doc["logs"][0]["stderr"], "oops\n", "{doc}");
}

#[test]
fn without_a_home_a_folder_another_user_could_plant_is_never_written_through() {
    let db = TestDatabase::create("cli_no_home");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"svc\"\n[[steps]]\nname = \"one\"\nrun = \"true\"\n");
    let tmp = sandbox.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(waypoint_bin())
            .args(["--store", &url, "--format", "json"])
            .args(args)
            .env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env("TMPDIR", &tmp)
            .current_dir(sandbox.dir.path())
            .output()
            .unwrap();
        Run::from_output(output)
    };
    // A folder someone else prepared (here: writable by everyone) is refused, and nothing is
    // written into it.
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
    let planted = tmp.join(format!("waypoint-{uid}"));
    std::fs::create_dir(&planted).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = run(&["run", plan.to_str().unwrap()]);
    assert_ne!(refused.code, Some(0), "{}", refused.stderr);
    assert!(refused.stderr.contains("not a private folder"), "{}", refused.stderr);
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0, "nothing written into the planted folder");
    // Its own private folder is used.
    std::fs::remove_dir(&planted).unwrap();
    run(&["run", "--new", plan.to_str().unwrap()]).expect_code(0);
    let mode = std::fs::metadata(&planted).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_failed_verify_on_postgres_names_no_command_that_refuses_postgres() {
    let db = TestDatabase::create("cli_verify");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    run(&sandbox, &url, &["plan", "create", "--id", "damaged"]).expect_code(0);
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).expect("the test server is reachable");
    client
        .execute("UPDATE waypoint_plans SET view = replace(view, 'queued', 'errored') WHERE plan_id = 'damaged'", &[])
        .expect("an update");
    let error = run(&sandbox, &url, &["store", "verify"]).expect_error(6, "verify_failed");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(!message.contains("store repair"), "`store repair` refuses PostgreSQL: {message}");
    assert!(message.contains("pg_dump"), "{message}");
}

#[test]
fn a_server_that_accepts_and_never_answers_is_exit_6_within_the_connect_timeout_naming_it() {
    let sandbox = Sandbox::new();
    // Accepts every connection and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("postgres://waypoint:{PASSWORD}@127.0.0.1:{port}/waypoint?connect_timeout=2");
    let started = std::time::Instant::now();
    let error = run(&sandbox, &url, &["plan", "list"]).expect_error(6, "store_unavailable");
    let waited = started.elapsed();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("did not answer within 2s"),
        "{message}"
    );
    // Bounded by the connect timeout (a hang lasts as long as the OS keeps the socket: minutes).
    assert!(waited < std::time::Duration::from_secs(10), "waited {waited:?}");
}

/// A role of the test server with `grants` (SQL run as the owner, `ROLE` standing for the role's
/// name) and a URL that logs in as it; the role is dropped at the end of the test.
struct Role {
    admin: postgres::Client,
    name: String,
    url: String,
}

impl Role {
    fn new(db: &TestDatabase, suffix: &str, grants: &str) -> Role {
        let mut admin = postgres::Client::connect(db.url(), postgres::NoTls).expect("the test server is reachable");
        let name = format!("{}_{suffix}", db.name());
        admin.batch_execute(&format!("CREATE ROLE {name} LOGIN; {}", grants.replace("ROLE", &name))).expect("a role");
        let url = db.url().replacen("postgres@", &format!("{name}@"), 1);
        assert_ne!(url, db.url(), "the test server's URL names its user");
        Role { admin, name, url }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name));
    }
}

#[test]
fn a_role_that_may_only_read_opens_the_store_and_refusals_carry_the_servers_message() {
    let db = TestDatabase::create("cli_reader");
    let url = url_with_password(&db);
    let sandbox = Sandbox::new();
    run(&sandbox, &url, &["plan", "create", "--id", "read-me", "--name", "report"]).expect_code(0);

    // SELECT only: reads work, as no open runs DDL on a current schema.
    let reader = Role::new(&db, "reader", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO ROLE");
    let listed = run(&sandbox, &reader.url, &["plan", "list"]);
    listed.expect_code(0);
    assert_eq!(listed.json()["plans"][0]["plan_id"], "read-me", "{}", listed.stdout);
    run(&sandbox, &reader.url, &["plan", "show", "read-me"]).expect_code(0);
    // A write is refused with what the server said, not "db error".
    let refused = run(&sandbox, &reader.url, &["plan", "create", "--id", "not-mine"]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("permission denied"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("db error"), "{}", refused.stderr);

    // No rights at all: the server's words name the table.
    let stranger = Role::new(&db, "stranger", "SELECT 1");
    let refused = run(&sandbox, &stranger.url, &["plan", "list"]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("permission denied for table"), "{}", refused.stderr);

    // A database that does not exist says so.
    let missing = waypoint_store_postgres::testing::with_database(&url, "wp_no_such_database");
    let refused = run(&sandbox, &missing, &["plan", "list"]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("database \"wp_no_such_database\" does not exist"), "{}", refused.stderr);
}

/// A URL without a password takes it from libpq's password file (`PGPASSFILE`, else
/// `~/.pgpass`), which keeps it out of `ps`; a file others may read is refused, naming the file
/// and the remedy, and never read. (The test server trusts local connections, so the password
/// is not checked here; the store's own tests show a server asking for it gets the file's.)
#[test]
fn a_password_file_others_may_read_is_refused_and_a_private_one_is_used() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDatabase::create("cli_pgpass");
    let sandbox = Sandbox::new();
    let line = format!("*:*:*:postgres:{PASSWORD}\n");
    let list = |passfile: Option<&std::path::Path>, home: &std::path::Path| {
        let mut command = sandbox.command(&["--store", db.url(), "plan", "list"]);
        command.env("HOME", home);
        match passfile {
            Some(file) => command.env("PGPASSFILE", file),
            None => command.env_remove("PGPASSFILE"),
        };
        let run = Run::from_output(command.output().expect("waypoint runs"));
        assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD), "{}\n{}", run.stdout, run.stderr);
        run
    };
    for (file, home) in
        [(Some(sandbox.write("pgpass", &line)), sandbox.path("nowhere")), (None, sandbox.dir.path().to_path_buf())]
    {
        let path = file.clone().unwrap_or_else(|| sandbox.write(".pgpass", &line));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = list(file.as_deref(), &home);
        refused.expect_error(6, "store_io");
        assert!(
            refused.stderr.contains(&path.display().to_string()) && refused.stderr.contains("chmod 600"),
            "{}",
            refused.stderr
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        list(file.as_deref(), &home).expect_code(0);
    }
}
