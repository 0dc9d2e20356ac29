//! The `treven` binary as engineers and ECS run it: grpcurl against
//! reflection, the mesh token gate, SIGTERM drain, config errors, and the
//! mesh key from AWS Secrets Manager (on the moto emulator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Moto, Server, TestDatabase, run, stdout_of, tool};

fn base_env(db_url: &str, keys: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = keys.to_vec();
    env.extend([
        ("TREVEN_TENANTS_DATABASE_URL", db_url.to_owned()),
        ("TREVEN_SHUTDOWN_GRACE_SECS", "5".to_owned()),
    ]);
    env
}

/// `treven admin mint-context` for tenants (at `addr`, which records the
/// audit entry) as the operator, with `envs` holding the operator's key.
fn mint(envs: &[(&'static str, String)], addr: &str, org: &str, user: &str, role: &str) -> String {
    let mut envs = envs.to_vec();
    envs.push(("TREVEN_TENANTS_URL", format!("http://{addr}")));
    stdout_of(run(
        &envs,
        &[
            "admin",
            "mint-context",
            "--org-id",
            org,
            "--user-id",
            user,
            "--role",
            role,
            "--audience",
            "tenants",
            "--reason",
            "test",
        ],
    ))
    .trim()
    .to_owned()
}

fn grpcurl(args: &[&str]) -> std::process::Output {
    Command::new(tool("grpcurl"))
        .args(args)
        .output()
        .expect("grpcurl runs")
}

fn json_field(json: &str, field: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    value[field].as_str().expect(field).to_owned()
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_tenants_behind_the_mesh_token() {
    let db = TestDatabase::create("treven_e2e").await;
    let url = db.url.clone();
    let keys = support::keygen();
    let server = Server::start_tenants(base_env(&url, &keys));
    let addr = server.address();

    let listed = stdout_of(grpcurl(&["-plaintext", &addr, "list"]));
    for service in [
        "treven.tenants.v1.TenantsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} in {listed}"
        );
    }
    assert!(
        !listed.contains("ReportsService"),
        "only what this server serves is listed"
    );
    let described = stdout_of(grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "treven.tenants.v1.User",
    ]));
    assert!(described.contains("string cognito_sub = 3;"), "{described}");

    // No token: UNAUTHENTICATED, with the stable code in the details.
    let refused = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/GetMe",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("Unauthenticated") && stderr.contains("UNAUTHORIZED"),
        "{stderr}"
    );

    // A token for org A works, and only for org A.
    let envs = server.envs().to_vec();
    let org = json_field(
        &stdout_of(run(&envs, &["admin", "ensure-org", "--name", "Alpha"])),
        "id",
    );
    let other = json_field(
        &stdout_of(run(&envs, &["admin", "ensure-org", "--name", "Bravo"])),
        "id",
    );
    stdout_of(run(
        &envs,
        &[
            "admin",
            "ensure-user",
            "--org-id",
            &org,
            "--email",
            "ann@alpha.example",
            "--role",
            "admin",
            "--cognito-sub",
            "ann",
        ],
    ));
    let token = mint(&envs, &addr, &org, "ann", "admin");
    let header = format!("x-treven-context: {token}");
    let me = stdout_of(grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/GetMe",
    ]));
    assert!(
        me.contains("ann@alpha.example") && me.contains("ROLE_ADMIN"),
        "{me}"
    );

    let b_token = mint(&envs, &addr, &other, "ann", "admin");
    let b_header = format!("x-treven-context: {b_token}");
    let b_users = stdout_of(grpcurl(&[
        "-plaintext",
        "-H",
        &b_header,
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/ListUsers",
    ]));
    assert!(!b_users.contains("ann@alpha.example"), "{b_users}");

    drop(server);
    db.drop().await;
}

#[tokio::test]
async fn sigterm_reports_not_serving_then_drains_and_exits_cleanly() {
    let db = TestDatabase::create("treven_e2e").await;
    let url = db.url.clone();
    let keys = support::keygen();
    let mut envs = base_env(&url, &keys);
    envs.push(("TREVEN_DRAIN_DELAY_SECS", "2".to_owned()));
    let mut server = Server::start_tenants(envs);
    assert!(server.healthy());

    server.terminate();
    let started = Instant::now();
    // During the drain delay the process is up but reports NOT_SERVING.
    let mut saw_not_serving = false;
    while started.elapsed() < Duration::from_millis(1500) {
        let check = run(&[], &["healthcheck", "--addr", &server.address()]);
        if String::from_utf8_lossy(&check.stderr).contains("NotServing") {
            saw_not_serving = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(saw_not_serving, "health turned NOT_SERVING on SIGTERM");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "exits within drain + grace"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit after drain: {status}");
    drop(server);
    db.drop().await;
}

#[tokio::test]
async fn a_bad_setting_stops_the_process_with_the_variable_named() {
    let keys = support::keygen();
    let with_keys = |extra: &[(&'static str, &str)]| {
        let mut env = keys.clone();
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let gateway_only = keys
        .iter()
        .map(|(name, value)| {
            let value = if *name == "TREVEN_MESH_SIGNING_KEYS" {
                value
                    .split(',')
                    .filter(|entry| entry.starts_with("gateway:"))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                value.clone()
            };
            (*name, value)
        })
        .chain([("TREVEN_TENANTS_DATABASE_URL", "postgres://x/y".to_owned())])
        .collect::<Vec<_>>();
    let cases = [
        (
            with_keys(&[
                ("TREVEN_TENANTS_DATABASE_URL", "postgres://x/y"),
                ("TREVEN_TENANTS_ADDR", "nope"),
            ]),
            "TREVEN_TENANTS_ADDR",
        ),
        (with_keys(&[]), "TREVEN_TENANTS_DATABASE_URL"),
        (
            vec![("TREVEN_TENANTS_DATABASE_URL", "postgres://x/y".to_owned())],
            "TREVEN_MESH_SIGNING_KEYS",
        ),
        (
            vec![
                ("TREVEN_TENANTS_DATABASE_URL", "postgres://x/y".to_owned()),
                ("TREVEN_MESH_SIGNING_KEYS", "tenants:c2hvcnQ=".to_owned()),
            ],
            "TREVEN_MESH_SIGNING_KEYS",
        ),
        // Another principal's key is no key for tenants.
        (gateway_only, "no signing key for tenants"),
        (
            with_keys(&[
                ("TREVEN_TENANTS_DATABASE_URL", "postgres://x/y"),
                ("TREVEN_SHUTDOWN_GRACE_SECS", "9999"),
            ]),
            "TREVEN_SHUTDOWN_GRACE_SECS",
        ),
    ];
    for (envs, variable) in cases {
        let output = run(&envs, &["serve", "--target", "tenants"]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable} named in: {stderr}");
    }
}

/// The `principal:seed` entry of `principal` in a keygen signing list.
fn signing_entry(keys: &[(&'static str, String)], principal: &str) -> String {
    keys.iter()
        .find(|(name, _)| *name == "TREVEN_MESH_SIGNING_KEYS")
        .and_then(|(_, list)| {
            list.split(',')
                .find(|entry| entry.starts_with(&format!("{principal}:")))
        })
        .expect("keygen lists every principal")
        .to_owned()
}

fn public_keys(keys: &[(&'static str, String)]) -> (&'static str, String) {
    keys.iter()
        .find(|(name, _)| *name == "TREVEN_MESH_PUBLIC_KEYS")
        .cloned()
        .expect("keygen prints the public keys")
}

#[tokio::test]
async fn the_signing_key_comes_from_secrets_manager_and_operator_mints_are_audited() {
    let moto = Moto::start();
    let keys = support::keygen();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-2"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    // What the CDK app's custom resource writes: the task's own key only.
    let arn = secrets
        .create_secret()
        .name("treven/test/mesh-signing/tenants")
        .secret_string(signing_entry(&keys, "tenants"))
        .send()
        .await
        .expect("secret created");
    let arn = arn.arn().expect("arn").to_owned();

    let db = TestDatabase::create("treven_e2e").await;
    let url = db.url.clone();
    let aws = vec![
        ("TREVEN_TENANTS_DATABASE_URL", url),
        ("TREVEN_MESH_SIGNING_KEY_SECRET_ID", arn),
        public_keys(&keys),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "eu-west-2".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ];
    let server = Server::start_tenants(aws.clone());
    let addr = server.address();
    let org = json_field(
        &stdout_of(run(
            server.envs(),
            &["admin", "ensure-org", "--name", "Alpha"],
        )),
        "id",
    );

    // An operator holding the operator key mints a context: accepted, and
    // recorded in the organisation's audit log first.
    let operator = vec![
        ("TREVEN_MESH_SIGNING_KEYS", signing_entry(&keys, "operator")),
        public_keys(&keys),
    ];
    let token = mint(&operator, &addr, &org, "ann", "admin");
    let header = format!("x-treven-context: {token}");
    let ok = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/GetOrganisation",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let audit = stdout_of(grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/ListAuditEvents",
    ]));
    assert!(
        audit.contains("mesh.context_minted") && audit.contains("\"reason\": \"test\""),
        "{audit}"
    );

    // Another key set's operator cannot even get a token: tenants refuses
    // its audit entry, and no token is printed.
    let foreign = support::keygen();
    let mut envs = vec![
        (
            "TREVEN_MESH_SIGNING_KEYS",
            signing_entry(&foreign, "operator"),
        ),
        public_keys(&foreign),
        ("TREVEN_TENANTS_URL", format!("http://{addr}")),
    ];
    let refused = run(
        &envs,
        &[
            "admin",
            "mint-context",
            "--org-id",
            &org,
            "--user-id",
            "ann",
            "--audience",
            "tenants",
            "--reason",
            "test",
        ],
    );
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty(), "no token without an audit entry");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("audit"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Production needs the explicit flag.
    envs.push(("TREVEN_ENV", "prod".to_owned()));
    let guarded = run(
        &envs,
        &[
            "admin",
            "mint-context",
            "--org-id",
            &org,
            "--user-id",
            "ann",
            "--audience",
            "tenants",
            "--reason",
            "test",
        ],
    );
    assert!(!guarded.status.success());
    assert!(String::from_utf8_lossy(&guarded.stderr).contains("--production"));

    drop(server);
    db.drop().await;
}

/// The value of the sample of `name` whose labels include every one of
/// `labels`, summed over the matching lines.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[tokio::test]
async fn the_admin_port_serves_rpc_counts_and_latency_histograms_of_the_calls_made() {
    let db = TestDatabase::create("treven_e2e").await;
    let keys = support::keygen();
    let admin = format!("127.0.0.1:{}", support::free_port());
    let mut envs = base_env(&db.url, &keys);
    envs.push(("TREVEN_ADMIN_ADDR", admin.clone()));
    let server = Server::start_tenants(envs);
    let addr = server.address();
    let http = reqwest::Client::new();

    let health = http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Health and metrics only.
    let other = http
        .get(format!("http://{admin}/api/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // Two calls without a token (UNAUTHENTICATED, code 16), one with.
    for _ in 0..2 {
        let refused = grpcurl(&[
            "-plaintext",
            "-d",
            "{}",
            &addr,
            "treven.tenants.v1.TenantsService/GetMe",
        ]);
        assert!(!refused.status.success());
    }
    let envs = server.envs().to_vec();
    let org = json_field(
        &stdout_of(run(&envs, &["admin", "ensure-org", "--name", "Metrics"])),
        "id",
    );
    stdout_of(run(
        &envs,
        &[
            "admin",
            "ensure-user",
            "--org-id",
            &org,
            "--email",
            "mo@metrics.example",
            "--role",
            "admin",
            "--cognito-sub",
            "mo",
        ],
    ));
    let token = mint(&envs, &addr, &org, "mo", "admin");
    let header = format!("x-treven-context: {token}");
    stdout_of(grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        "{}",
        &addr,
        "treven.tenants.v1.TenantsService/GetMe",
    ]));

    let response = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let get_me = [
        r#"rpc_system="grpc""#,
        r#"rpc_service="treven.tenants.v1.TenantsService""#,
        r#"rpc_method="GetMe""#,
    ];
    let count = "rpc_server_call_duration_seconds_count";
    let with = |code: &'static str| {
        let mut labels = get_me.to_vec();
        labels.push(code);
        sample(&text, count, &labels)
    };
    assert_eq!(with(r#"rpc_grpc_status_code="16""#), 2.0, "{text}");
    assert_eq!(with(r#"rpc_grpc_status_code="0""#), 1.0, "{text}");
    assert!(
        text.contains("# TYPE rpc_server_call_duration_seconds histogram"),
        "{text}"
    );
    let mut inf = get_me.to_vec();
    inf.extend([r#"rpc_grpc_status_code="0""#, r#"le="+Inf""#]);
    assert_eq!(
        sample(&text, "rpc_server_call_duration_seconds_bucket", &inf),
        1.0
    );
    // The pool's use is there too.
    assert!(
        text.contains(r#"db_client_connection_count{db_client_connection_pool_name="tenants""#),
        "{text}"
    );

    drop(server);
    db.drop().await;
}
