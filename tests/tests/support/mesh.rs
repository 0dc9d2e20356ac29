//! The whole mesh as separate `treven` processes, driven only through the
//! gateway: real Postgres and Redis, moto for S3/DynamoDB/Cognito, and the
//! wire-compatible Bedrock fake behind the agents service that answers chat.
//!
//! Processes: tenants, documents, reports, agents (offline model, used by the
//! reports service to generate), agents-chat (Bedrock fake, used by the
//! gateway for conversations) and the gateway. Users sign in against moto's
//! Cognito pool with `xtask/dev_aws.py` exactly as `cargo xtask token` does.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use treven_testkit::bedrock::BedrockFake;

use super::{Server, TestDatabase, free_port, run, stdout_of, tool};

/// A running mesh; every process is killed when it is dropped.
pub struct Mesh {
    /// `http://127.0.0.1:<port>` of the gateway's REST surface.
    pub gateway: String,
    /// `ws://127.0.0.1:<port>/ws`.
    pub ws: String,
    /// The Bedrock fake the chat agents service talks to.
    pub bedrock: BedrockFake,
    /// Environment every process shares (for admin commands).
    pub env: Vec<(&'static str, String)>,
    /// The Cognito user pool in moto.
    pub pool_id: String,
    /// Its web client (ADMIN_USER_PASSWORD_AUTH).
    pub client_id: String,
    servers: Vec<Server>,
    database: Option<TestDatabase>,
    reports_port: u16,
    _moto: treven_testkit::Moto,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// Organisation id.
    pub org_id: String,
    /// Cognito subject.
    pub sub: String,
    /// Cognito ID token.
    pub token: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// What a drill changes about the mesh.
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    /// Postgres database of tenants and reports (a fresh test database when
    /// unset).
    pub database_url: Option<String>,
    /// Redis of every process (the shared one when unset).
    pub redis_url: Option<String>,
    /// Leave the reports service out (the drill starts its own instances).
    pub without_reports: bool,
    /// A second tenants instance; the gateway balances across both.
    pub second_tenants: bool,
    /// Environment added to every process.
    pub env: Vec<(&'static str, String)>,
}

impl Mesh {
    /// Starts every process and waits until each serves.
    pub async fn start(name: &str) -> Mesh {
        Mesh::start_with(name, MeshOptions::default()).await
    }

    /// Starts the mesh as `options` say.
    pub async fn start_with(name: &str, options: MeshOptions) -> Mesh {
        let (database, database_url) = match &options.database_url {
            Some(url) => (None, url.clone()),
            None => {
                let database = TestDatabase::create(&format!("treven_e2e_{name}")).await;
                let url = database.url.clone();
                (Some(database), url)
            }
        };
        let moto = treven_testkit::Moto::start();
        let bedrock = BedrockFake::start().await;
        let mesh_keys = super::keygen();

        let provisioned = Command::new(tool("python"))
            .arg(root().join("xtask/dev_aws.py"))
            .args(["provision", "--tables"])
            .arg(root().join("deploy/resources/dynamodb-tables.json"))
            .args(["--env", "e2e", "--bucket", "treven-data-e2e"])
            .args([
                "--pool-name",
                "treven-e2e",
                "--secret-name",
                "treven/e2e/mesh-signing-keys",
            ])
            .envs(moto.aws_env())
            .envs(mesh_keys.iter().cloned())
            .stderr(Stdio::inherit())
            .output()
            .expect("dev_aws.py provision runs");
        let provisioned: Value = serde_json::from_str(&stdout_of(provisioned)).expect("JSON");
        let text = |key: &str| provisioned[key].as_str().expect(key).to_owned();

        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let [
            tenants,
            documents,
            reports,
            agents,
            agents_chat,
            gateway,
            ws,
            ..,
        ] = ports[..]
        else {
            unreachable!()
        };
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut env: Vec<(&'static str, String)> = moto.aws_env();
        env.extend(mesh_keys);
        env.extend([
            ("TREVEN_ENV", "local".to_owned()),
            // The services log in as their own login roles, which `treven
            // migrate` creates as the owner (the URL's user).
            (
                "TREVEN_TENANTS_DATABASE_URL",
                treven_testkit::with_user(&database_url, "treven_tenants_svc"),
            ),
            (
                "TREVEN_REPORTS_DATABASE_URL",
                treven_testkit::with_user(&database_url, "treven_reports_svc"),
            ),
            ("TREVEN_MIGRATE_DATABASE_USER", user_of(&database_url)),
            (
                "TREVEN_REDIS_URL",
                options
                    .redis_url
                    .clone()
                    .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
            ),
            ("TREVEN_DATA_BUCKET", text("bucket")),
            (
                "TREVEN_DOCUMENTS_TABLE",
                provisioned["tables"]["documents"]
                    .as_str()
                    .expect("documents")
                    .to_owned(),
            ),
            (
                "TREVEN_AGENTS_TABLE",
                provisioned["tables"]["agents"]
                    .as_str()
                    .expect("agents")
                    .to_owned(),
            ),
            ("TREVEN_COGNITO_ISSUER", text("issuer")),
            ("TREVEN_COGNITO_JWKS_URL", text("jwks_url")),
            ("TREVEN_COGNITO_CLIENT_ID", text("client_id")),
            // Tenants invites users into the pool and disables removed ones.
            ("TREVEN_COGNITO_USER_POOL_ID", text("user_pool_id")),
            ("TREVEN_TENANTS_URL", url(tenants)),
            ("TREVEN_DOCUMENTS_URL", url(documents)),
            ("TREVEN_REPORTS_URL", url(reports)),
            ("TREVEN_AGENTS_URL", url(agents)),
            ("TREVEN_MODEL_PRIMARY", "offline".to_owned()),
            ("TREVEN_MODEL_SECONDARY", "none".to_owned()),
        ]);
        env.extend(options.env.iter().cloned());
        let migrated = run(&env, &["migrate"]);
        stdout_of(migrated);

        let with = |extra: &[(&'static str, String)]| {
            let mut all = env.clone();
            all.extend(extra.iter().cloned());
            all
        };
        let mut tenants_urls = url(tenants);
        let mut servers = vec![Server::start_on(
            "tenants",
            with(&[]),
            "TREVEN_TENANTS_ADDR",
            tenants,
        )];
        if options.second_tenants {
            let port = free_port();
            servers.push(Server::start_on(
                "tenants",
                with(&[]),
                "TREVEN_TENANTS_ADDR",
                port,
            ));
            tenants_urls = format!("{tenants_urls},{}", url(port));
        }
        servers.extend([
            Server::start_on("documents", with(&[]), "TREVEN_DOCUMENTS_ADDR", documents),
            Server::start_on("agents", with(&[]), "TREVEN_AGENTS_ADDR", agents),
            Server::start_on(
                "agents",
                with(&[
                    ("TREVEN_MODEL_PRIMARY", "bedrock".to_owned()),
                    ("TREVEN_BEDROCK_ENDPOINT", bedrock.endpoint().to_owned()),
                ]),
                "TREVEN_AGENTS_ADDR",
                agents_chat,
            ),
        ]);
        if !options.without_reports {
            servers.push(Server::start_on(
                "reports",
                with(&[]),
                "TREVEN_REPORTS_ADDR",
                reports,
            ));
        }
        servers.push(Server::start_http(
            "gateway",
            with(&[
                ("TREVEN_AGENTS_URL", url(agents_chat)),
                ("TREVEN_TENANTS_URL", tenants_urls),
                ("TREVEN_GATEWAY_ADDR", format!("127.0.0.1:{gateway}")),
                ("TREVEN_GATEWAY_WS_ADDR", format!("127.0.0.1:{ws}")),
            ]),
            ws,
        ));
        wait_http(&format!("{}/healthz", url(gateway))).await;
        Mesh {
            gateway: url(gateway),
            ws: format!("ws://127.0.0.1:{ws}/ws"),
            bedrock,
            env,
            pool_id: text("user_pool_id"),
            client_id: text("client_id"),
            servers,
            database,
            reports_port: reports,
            _moto: moto,
        }
    }

    /// Ensures the organisation (by name), the Cognito user and the tenants
    /// user with `role`, then signs in for a Cognito ID token.
    pub fn sign_in(&self, org: &str, kind: &str, email: &str, role: &str) -> User {
        let mut operator: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        operator.push(("TREVEN_LOG_FORMAT".to_owned(), "json".to_owned()));
        let aws: Vec<(&'static str, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .cloned()
            .collect();
        sign_in_user(
            &operator,
            &aws,
            &self.pool_id,
            &self.client_id,
            org,
            kind,
            email,
            role,
        )
    }

    /// Starts a reports instance on the port the rest of the mesh calls
    /// (after the previous one died) and waits until it is SERVING.
    pub fn start_reports(&self, extra: &[(&'static str, String)]) -> Server {
        let mut env = self.env.clone();
        env.extend(extra.iter().cloned());
        Server::start_on("reports", env, "TREVEN_REPORTS_ADDR", self.reports_port)
    }

    /// The first tenants instance (the second, when asked for, is the next
    /// process).
    pub fn tenants_server(&mut self) -> &mut Server {
        &mut self.servers[0]
    }

    /// The gateway process (the last one started).
    pub fn gateway_server(&self) -> &Server {
        self.servers.last().expect("the gateway runs")
    }

    /// Kills every process and drops the database.
    pub async fn stop(mut self) {
        self.servers.clear();
        if let Some(database) = self.database.take() {
            database.drop().await;
        }
    }
}

impl super::Stack for Mesh {
    fn gateway_url(&self) -> &str {
        &self.gateway
    }

    fn ws_url(&self) -> &str {
        &self.ws
    }

    fn sign_in(&self, org: &str, kind: &str, email: &str, role: &str) -> User {
        Mesh::sign_in(self, org, kind, email, role)
    }
}

/// The user of a `postgres://user[:password]@host/...` URL.
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split_once('@')
        .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or_default().to_owned())
        .expect("a user in the database URL")
}

/// Ensures the organisation (by name) with `treven admin ensure-org` run with
/// `operator` (an environment that reaches the tenants database), the Cognito
/// user in the pool (`xtask/dev_aws.py user` with `aws`), and the tenants user
/// with `role`; returns the signed-in user with its Cognito ID token.
#[allow(clippy::too_many_arguments)]
pub fn sign_in_user(
    operator: &[(String, String)],
    aws: &[(&'static str, String)],
    pool_id: &str,
    client_id: &str,
    org: &str,
    kind: &str,
    email: &str,
    role: &str,
) -> User {
    let admin = |args: &[&str]| {
        super::prodlike::treven_with(operator)
            .args(args)
            .output()
            .expect("treven admin runs")
    };
    let created: Value = serde_json::from_str(
        stdout_of(admin(&[
            "admin",
            "ensure-org",
            "--name",
            org,
            "--kind",
            kind,
        ]))
        .lines()
        .last()
        .expect("a line"),
    )
    .expect("JSON");
    let org_id = created["id"].as_str().expect("org id").to_owned();
    let out = Command::new(tool("python"))
        .arg(root().join("xtask/dev_aws.py"))
        .args(["user", "--pool-id", pool_id, "--client-id", client_id])
        .args([
            "--email", email, "--name", email, "--org-id", &org_id, "--role", role,
        ])
        .envs(aws.iter().cloned())
        .env("AWS_DEFAULT_REGION", "eu-west-2")
        .stderr(Stdio::inherit())
        .output()
        .expect("dev_aws.py user runs");
    let signed: Value = serde_json::from_str(&stdout_of(out)).expect("JSON");
    let sub = signed["sub"].as_str().expect("sub").to_owned();
    stdout_of(admin(&[
        "admin",
        "ensure-user",
        "--org-id",
        &org_id,
        "--email",
        email,
        "--name",
        email,
        "--role",
        role,
        "--cognito-sub",
        &sub,
    ]));
    User {
        org_id,
        sub,
        token: signed["id_token"].as_str().expect("id token").to_owned(),
    }
}

async fn wait_http(url: &str) {
    let started = Instant::now();
    loop {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
