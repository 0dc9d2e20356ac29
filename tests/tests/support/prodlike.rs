//! The production shape, booted on this machine: every task of
//! `deploy/cdk.out/Treven-prod.template.json` (the six ECS task definitions,
//! and the AgentCore runtime when the template has one) as its own `treven`
//! process with its own command, `Environment` and `Secrets`, against
//! TLS-only stand-ins started for the run:
//!
//! - RDS → a private Postgres cluster accepting only `hostssl` with
//!   scram-sha-256 for the login role and database of the template's URL,
//!   with the password of the generated RDS secret;
//! - ElastiCache → a private Redis with no plaintext port (`--port 0
//!   --tls-port`) and `--requirepass` = the generated AUTH token;
//! - S3, DynamoDB, Cognito and Secrets Manager → moto; each
//!   `AWS::SecretsManager::Secret` is created there with a generated value
//!   (`GenerateSecretString`) or its resolved `SecretString`, and every ECS
//!   `Secrets` entry is read back FROM moto as ECS does (ARN, optional JSON
//!   key);
//! - both servers present a `localhost` certificate of a throwaway CA.
//!
//! The local necessities, and nothing else, are added to or changed in each
//! task's environment (see [`LOCAL_NECESSITIES`]); a task that needs more to
//! boot is a bug of the template or the binary, not something to paper over
//! here.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use treven_testkit::bedrock::BedrockFake;

use super::drill::{PostgresLogin, PrivatePostgres, PrivateRedis};
use super::mesh::{User, sign_in_user};
use super::template::{
    Stand, TaskSpec, Template, attached_secret, json_key_of, named_reference, parse_value_from,
};
use super::tls::TestCa;
use super::{Moto, free_port, tool, treven_bin};

/// What the prod-like stack changes in each task's environment, and why
/// (docs/testing.md repeats it):
///
/// - `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
///   `AWS_EC2_METADATA_DISABLED`: the AWS SDK talks to moto with dummy
///   credentials instead of the task role;
/// - `TREVEN_BEDROCK_ENDPOINT` (agents, agent-runtime): the Bedrock runtime
///   is the wire-compatible fake (`treven_testkit::bedrock`);
/// - `TREVEN_COGNITO_JWKS_URL` (gateways): moto serves the pool's keys at its
///   own address while tokens carry the real issuer;
/// - every `TREVEN_*_ADDR` → `127.0.0.1:<free port>` (tests run in parallel;
///   the runtime, which listens on :8080 by default, gets
///   `TREVEN_AGENT_RUNTIME_ADDR`);
/// - `TREVEN_RESOLVE` (tasks that call others): `host:port=127.0.0.1:<port>`
///   for each Cloud Map name the task's URLs use, like `curl --resolve`
///   (TLS still verifies the Cloud Map name);
/// - a value that is a path in the image (`/etc/treven/…pem`) → this run's
///   throwaway CA file, and `SSL_CERT_FILE` = that file (the convention for
///   extra trust roots);
/// - PATH and HOME (the process environment is otherwise cleared).
pub const LOCAL_NECESSITIES: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
    "TREVEN_BEDROCK_ENDPOINT",
    "TREVEN_COGNITO_JWKS_URL",
    "TREVEN_*_ADDR",
    "TREVEN_RESOLVE",
    "SSL_CERT_FILE",
];

/// What `Ref` of a secret not created yet resolves to.
pub const PENDING: &str = "pending-secret:";

/// `Ref` and `Fn::GetAtt` as the local stand-ins answer them.
#[derive(Debug, Default, Clone)]
pub struct LocalStand {
    /// Postgres TLS port (RDS `Endpoint.Port`).
    pub postgres_port: u16,
    /// Redis TLS port (ElastiCache `PrimaryEndPoint.Port`).
    pub redis_port: u16,
    /// Secret logical id → its ARN in moto.
    pub secret_arns: BTreeMap<String, String>,
    /// Cognito user pool id in moto.
    pub user_pool_id: Option<String>,
    /// Cognito app client id in moto.
    pub client_id: Option<String>,
}

impl Stand for LocalStand {
    fn reference(&self, template: &Template, id: &str) -> String {
        if let Some(name) = named_reference(template, id) {
            return name;
        }
        if let Some(secret) = attached_secret(template, id) {
            return self.reference(template, &secret);
        }
        match template.type_of(id) {
            // A secret not created yet: `Template::secret_value` of a secret
            // referring to it answers None until it is.
            "AWS::SecretsManager::Secret" => self
                .secret_arns
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("{PENDING}{id}")),
            "AWS::Cognito::UserPool" => self.user_pool_id.clone().expect("the pool exists"),
            "AWS::Cognito::UserPoolClient" => self.client_id.clone().expect("the client exists"),
            other => panic!("no local stand-in for Ref of {id} ({other})"),
        }
    }

    fn attribute(&self, template: &Template, id: &str, attribute: &str) -> String {
        match (template.type_of(id), attribute) {
            // The stand-ins' certificates are for localhost.
            ("AWS::RDS::DBInstance" | "AWS::RDS::DBCluster", "Endpoint.Address")
            | ("AWS::ElastiCache::ReplicationGroup", "PrimaryEndPoint.Address") => {
                "localhost".to_owned()
            }
            ("AWS::RDS::DBInstance" | "AWS::RDS::DBCluster", "Endpoint.Port") => {
                self.postgres_port.to_string()
            }
            ("AWS::ElastiCache::ReplicationGroup", "PrimaryEndPoint.Port") => {
                self.redis_port.to_string()
            }
            ("Custom::TrevenMeshKeys", attribute) => {
                super::template::mesh_keys_attribute(attribute)
            }
            // The guardrail is the Bedrock fake's standing one.
            ("AWS::Bedrock::Guardrail", "GuardrailId") => "treven-pii-local".to_owned(),
            ("AWS::Bedrock::GuardrailVersion", "Version") => "1".to_owned(),
            (kind, _) => panic!("no local stand-in for Fn::GetAtt {id}.{attribute} ({kind})"),
        }
    }
}

/// One task's `treven` process; killed when dropped. Its stdout and stderr
/// go to one log file.
pub struct TaskProcess {
    /// The task's name (`tenants`, `gateway-api`, …).
    pub name: String,
    /// The environment it was started with.
    pub env: Vec<(String, String)>,
    /// Its own port (gRPC, the gateway listener of its container port, the
    /// runtime's).
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl TaskProcess {
    /// The last `lines` lines of its output.
    pub fn tail(&self, lines: usize) -> String {
        tail_of(&self.log, lines)
    }
}

impl Drop for TaskProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `treven` command with exactly `env` (plus PATH and HOME).
pub fn treven_with(env: &[(String, String)]) -> Command {
    let mut command = Command::new(treven_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Starts `treven <args>` with `env`, output to `log`.
pub fn spawn_logged(env: &[(String, String)], args: &[String], log: &Path) -> Child {
    let file = File::create(log).expect("log file");
    treven_with(env)
        .args(args)
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("spawn treven")
}

/// Reads an ECS `Secrets` entry from moto's Secrets Manager: `ValueFrom` is
/// the secret's ARN, optionally followed by `:<json-key>::`.
pub async fn read_secret(sm: &aws_sdk_secretsmanager::Client, value_from: &str) -> String {
    let (arn, key) = parse_value_from(value_from);
    let value = sm
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetSecretValue {arn}: {e:?}"))
        .secret_string()
        .expect("a string secret")
        .to_owned();
    json_key_of(&value, &key)
}

/// The prod-like stack: stand-ins and one process per task.
pub struct ProdStack {
    /// `http://127.0.0.1:<port>` of the gateway-api task's REST listener.
    pub gateway: String,
    /// `ws://127.0.0.1:<port>/ws` of the gateway-ws task's WebSocket listener.
    pub ws: String,
    /// The Bedrock fake behind agents (and the runtime).
    pub bedrock: BedrockFake,
    /// Every task's process, in start order.
    pub tasks: Vec<TaskProcess>,
    /// The template the tasks came from.
    pub template: Template,
    /// The run's CA (its file is the tasks' `SSL_CERT_FILE`).
    pub ca: TestCa,
    user_pool_id: String,
    client_id: String,
    aws_env: Vec<(&'static str, String)>,
    /// The migrate task's environment: how an operator runs `treven admin`
    /// in AWS (a one-off task of that definition, command overridden).
    migrate_env: Vec<(String, String)>,
    /// Directory of the processes' logs.
    pub logs: PathBuf,
    _postgres: PrivatePostgres,
    _redis: PrivateRedis,
    _moto: Moto,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The value of `name` in `env`.
pub fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value));
}

/// `host:port` of a URL such as `https://tenants.treven.internal:50051`.
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

impl ProdStack {
    /// Boots the stack; panics with every task's output tail when one does
    /// not reach SERVING within 60 s.
    pub async fn start() -> ProdStack {
        // The variant with the AgentCore runtime: every task of the prod
        // shape, the runtime included.
        let template = Template::load_with_agent_runtime("prod");
        let specs = template.tasks();
        let logs = std::env::temp_dir().join(format!("treven-prodlike-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&logs).unwrap();
        let ca = TestCa::new("prodlike");
        let moto = Moto::start();
        let bedrock = BedrockFake::start().await;
        // The agents tasks apply the template's guardrail: a standing one
        // that finds nothing answers, so model scripts stay in order.
        bedrock.set_guardrail(Some(treven_testkit::bedrock::GuardrailPolicy::anonymize(
            &[],
        )));
        let aws_env = moto.aws_env();
        let sdk = moto.sdk().await;
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);

        let mut stand = LocalStand {
            postgres_port: free_port(),
            redis_port: free_port(),
            ..LocalStand::default()
        };

        // Secrets, as CloudFormation creates them: generated ones first,
        // then those whose SecretString refers to them.
        let secret_ids = template.of_type("AWS::SecretsManager::Secret");
        let mut values = BTreeMap::new();
        for _ in 0..=secret_ids.len() {
            for id in &secret_ids {
                if values.contains_key(id) {
                    continue;
                }
                let Some(value) = template.secret_value(id, &stand, &values) else {
                    continue;
                };
                let name = template.resource(id)["Properties"]["Name"]
                    .as_str()
                    .map_or_else(|| format!("treven/prodlike/{id}"), str::to_owned);
                let created = sm
                    .create_secret()
                    .name(&name)
                    .secret_string(&value)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("CreateSecret {name}: {e:?}"));
                stand
                    .secret_arns
                    .insert(id.clone(), created.arn().expect("an ARN").to_owned());
                values.insert(id.clone(), value);
            }
        }
        assert_eq!(values.len(), secret_ids.len(), "every secret is created");

        // Bucket, tables and user pool (xtask/dev_aws.py, as `cargo xtask
        // dev` provisions them), under the template's names.
        // The operator's signing key secret (filled above as the
        // Custom::TrevenMeshKeys Lambda would): dev_aws.py is given it so it
        // finds the secret it would otherwise create already in place.
        let mesh_key_id = template
            .of_type("AWS::SecretsManager::Secret")
            .into_iter()
            .find(|id| {
                super::template::mesh_key_secret_principal(&template, id)
                    == Some(treven_mesh::Principal::Operator)
            })
            .expect("the template has the operator's signing key secret");
        let bucket = template
            .of_type("AWS::S3::Bucket")
            .into_iter()
            .filter_map(|id| named_reference(&template, &id))
            .find(|name| name.starts_with("treven-data-"))
            .expect("the data bucket");
        let provisioned = Command::new(tool("python"))
            .arg(root().join("xtask/dev_aws.py"))
            .args(["provision", "--tables"])
            .arg(root().join("deploy/resources/dynamodb-tables.json"))
            .args(["--env", "prod", "--bucket", &bucket])
            .args(["--pool-name", "treven-prod", "--secret-name"])
            .arg(
                template.resource(&mesh_key_id)["Properties"]["Name"]
                    .as_str()
                    .expect("the mesh key secret's name"),
            )
            .envs(aws_env.iter().cloned())
            .env("TREVEN_MESH_SIGNING_KEYS", &values[&mesh_key_id])
            .stderr(Stdio::inherit())
            .output()
            .expect("dev_aws.py provision runs");
        let provisioned: Value =
            serde_json::from_str(&super::stdout_of(provisioned)).expect("JSON");
        stand.user_pool_id = provisioned["user_pool_id"].as_str().map(str::to_owned);
        stand.client_id = provisioned["client_id"].as_str().map(str::to_owned);
        let tables: Vec<&str> = provisioned["tables"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_str)
            .collect();
        for id in template.of_type("AWS::DynamoDB::Table") {
            let name = named_reference(&template, &id).expect("a table name");
            assert!(
                tables.contains(&name.as_str()),
                "the template's table {name} is not in deploy/resources/dynamodb-tables.json ({tables:?})"
            );
        }

        // Each task's environment, secrets read back from moto.
        let mut envs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for spec in &specs {
            let mut env: Vec<(String, String)> = spec
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), template.resolve(v, &stand)))
                .collect();
            for (name, value_from) in &spec.secrets {
                let value_from = template.resolve(value_from, &stand);
                env.push((name.clone(), read_secret(&sm, &value_from).await));
            }
            envs.insert(spec.name.clone(), env);
        }

        // The stand-ins, with the credentials the tasks were given: RDS's
        // master user (the owner) is what the migrate task connects as; it
        // creates the services' login roles with their own passwords.
        let migrate_env = &envs["migrate"];
        let database_url = get(migrate_env, "TREVEN_TENANTS_DATABASE_URL")
            .expect("the migrate task has TREVEN_TENANTS_DATABASE_URL");
        let mut login = postgres_login(
            database_url,
            get(migrate_env, "TREVEN_MIGRATE_DATABASE_PASSWORD"),
        );
        login.user = get(migrate_env, "TREVEN_MIGRATE_DATABASE_USER")
            .expect("the migrate task names the owner (TREVEN_MIGRATE_DATABASE_USER)")
            .to_owned();
        let postgres = PrivatePostgres::start_tls_on(&ca, &login, stand.postgres_port);
        let redis_url = envs
            .values()
            .find_map(|env| get(env, "TREVEN_REDIS_URL"))
            .expect("a task has TREVEN_REDIS_URL");
        let token = redis_url
            .split_once("://:")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(token, _)| token)
            .unwrap_or_else(|| panic!("TREVEN_REDIS_URL {redis_url} carries no AUTH token"));
        let redis = PrivateRedis::start_tls_on(&ca, token, stand.redis_port);

        // Local necessities.
        let mut ports: BTreeMap<String, u16> = BTreeMap::new();
        for spec in &specs {
            ports.insert(spec.name.clone(), free_port());
        }
        // Cloud Map names → the loopback port of the task that serves them.
        let mut cloud_map: BTreeMap<(String, u16), u16> = BTreeMap::new();
        for spec in &specs {
            for (name, value) in &envs[&spec.name] {
                if name.starts_with("TREVEN_") && name.ends_with("_ADDR") {
                    let listen: u16 = value
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse().ok())
                        .unwrap_or_else(|| panic!("{}: {name}={value}", spec.name));
                    if let Some(service) = name
                        .strip_prefix("TREVEN_")
                        .and_then(|n| n.strip_suffix("_ADDR"))
                        .filter(|s| ["TENANTS", "DOCUMENTS", "REPORTS", "AGENTS"].contains(s))
                    {
                        cloud_map.insert(
                            (
                                format!("{}.treven.internal", service.to_lowercase()),
                                listen,
                            ),
                            ports[&spec.name],
                        );
                    }
                }
            }
        }
        let ca_file = ca.ca_cert.display().to_string();
        for spec in &specs {
            let env = envs.get_mut(&spec.name).unwrap();
            let own = ports[&spec.name];
            let names: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
            for name in names {
                let value = get(env, &name).unwrap().to_owned();
                if name.starts_with("TREVEN_") && name.ends_with("_ADDR") {
                    let port = if name == "TREVEN_GATEWAY_WS_ADDR" && spec.name != "gateway-ws"
                        || name == "TREVEN_GATEWAY_ADDR" && spec.name == "gateway-ws"
                        || name == "TREVEN_ADMIN_ADDR"
                    {
                        free_port()
                    } else {
                        own
                    };
                    set(env, &name, format!("127.0.0.1:{port}"));
                } else if super::template::is_image_file(&value) {
                    set(env, &name, ca_file.clone());
                }
            }
            if spec.name == "agent-runtime" && get(env, "TREVEN_AGENT_RUNTIME_ADDR").is_none() {
                set(env, "TREVEN_AGENT_RUNTIME_ADDR", format!("127.0.0.1:{own}"));
            }
            let resolve: Vec<String> = env
                .iter()
                .filter(|(k, _)| k.starts_with("TREVEN_") && k.ends_with("_URL"))
                .flat_map(|(_, v)| v.split(',').filter_map(host_port).collect::<Vec<_>>())
                .filter_map(|(host, port)| {
                    cloud_map
                        .get(&(host.clone(), port))
                        .map(|local| format!("{host}:{port}=127.0.0.1:{local}"))
                })
                .collect();
            if !resolve.is_empty() {
                set(env, "TREVEN_RESOLVE", resolve.join(","));
            }
            for (k, v) in &aws_env {
                if *k != "AWS_REGION" {
                    set(env, k, v.clone());
                }
            }
            set(env, "SSL_CERT_FILE", ca_file.clone());
            if ["agents", "agent-runtime"].contains(&spec.role().as_str()) {
                set(
                    env,
                    "TREVEN_BEDROCK_ENDPOINT",
                    bedrock.endpoint().to_owned(),
                );
            }
            if spec.role() == "gateway" {
                set(
                    env,
                    "TREVEN_COGNITO_JWKS_URL",
                    provisioned["jwks_url"]
                        .as_str()
                        .expect("jwks_url")
                        .to_owned(),
                );
            }
        }

        // Migrations, as the deploy runs them: the one-off migrate task, its
        // own command and environment (the owner's credentials and each
        // service's login role and password).
        let migrate = specs
            .iter()
            .find(|spec| spec.name == "migrate")
            .expect("the template has the migrate task");
        let out = treven_with(&envs["migrate"])
            .args(&migrate.command)
            .output()
            .expect("treven migrate runs");
        assert!(
            out.status.success(),
            "`treven {}` with the migrate task's environment failed:\n{}{}",
            migrate.command.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The rest are services.
        let specs: Vec<TaskSpec> = specs
            .into_iter()
            .filter(|spec| spec.port.is_some())
            .collect();

        // Every task, each with its own command; then wait for SERVING.
        let mut tasks = Vec::new();
        for spec in &specs {
            let env = envs[&spec.name].clone();
            let log = logs.join(format!("{}.log", spec.name));
            let child = spawn_logged(&env, &spec.command, &log);
            tasks.push(TaskProcess {
                name: spec.name.clone(),
                env,
                port: ports[&spec.name],
                child,
                log,
            });
        }
        let mut stack = ProdStack {
            gateway: String::new(),
            ws: String::new(),
            bedrock,
            tasks,
            template,
            ca,
            user_pool_id: stand.user_pool_id.clone().unwrap(),
            client_id: stand.client_id.clone().unwrap(),
            aws_env,
            migrate_env: envs["migrate"].clone(),
            logs,
            _postgres: postgres,
            _redis: redis,
            _moto: moto,
        };
        stack.wait_serving(&specs, Duration::from_secs(60)).await;
        let api = stack.task("gateway-api");
        stack.gateway = format!(
            "http://{}",
            get(&api.env, "TREVEN_GATEWAY_ADDR").expect("gateway-api listens")
        );
        let ws = stack.task("gateway-ws");
        stack.ws = format!(
            "ws://{}/ws",
            get(&ws.env, "TREVEN_GATEWAY_WS_ADDR").expect("gateway-ws listens")
        );
        stack
    }

    /// The task `name`.
    pub fn task(&self, name: &str) -> &TaskProcess {
        self.tasks
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no task {name}"))
    }

    /// Every task's name, exit status if it exited, and output tail.
    pub fn report(&mut self) -> String {
        let mut out = String::new();
        for task in &mut self.tasks {
            let state = match task.child.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                _ => "running".to_owned(),
            };
            out.push_str(&format!(
                "\n--- {} ({state}) `treven {}`; last lines of {}:\n{}\n",
                task.name,
                "serve",
                task.log.display(),
                task.tail(25)
            ));
        }
        out
    }

    async fn wait_serving(&mut self, specs: &[TaskSpec], limit: Duration) {
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut waiting: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for name in waiting {
                let index = self.tasks.iter().position(|t| t.name == name).unwrap();
                let exited = self.tasks[index].child.try_wait().ok().flatten();
                if let Some(status) = exited {
                    panic!(
                        "task {name} exited ({status}) before SERVING{}",
                        self.report()
                    );
                }
                let task = &self.tasks[index];
                let role = specs.iter().find(|s| s.name == name).unwrap().role();
                let serving = match role.as_str() {
                    "gateway" => {
                        let base = format!("http://127.0.0.1:{}", task.port);
                        let mut ok = true;
                        for path in ["/healthz", "/readyz"] {
                            ok &= http
                                .get(format!("{base}{path}"))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                        }
                        ok
                    }
                    "agent-runtime" | "agentcore" => http
                        .get(format!("http://127.0.0.1:{}/ping", task.port))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    _ => treven_with(&task.env)
                        .args(["healthcheck", "--addr", &format!("127.0.0.1:{}", task.port)])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success()),
                };
                if !serving {
                    still.push(name);
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() > limit {
                let detail: Vec<String> = waiting
                    .iter()
                    .map(|name| {
                        let task = self.task(name);
                        let probe = treven_with(&task.env)
                            .args(["healthcheck", "--addr", &format!("127.0.0.1:{}", task.port)])
                            .output()
                            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                            .unwrap_or_default();
                        format!("{name} (port {}; healthcheck says: {probe})", task.port)
                    })
                    .collect();
                panic!(
                    "not SERVING within {limit:?}: {}{}",
                    detail.join("; "),
                    self.report()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Signs a user in: the organisation and tenants user made by `treven
    /// admin` with the tenants task's environment (as an operator would),
    /// the Cognito user in moto's pool.
    pub fn sign_in(&self, org: &str, kind: &str, email: &str, role: &str) -> User {
        let operator = self.migrate_env.clone();
        sign_in_user(
            &operator,
            &self.aws_env,
            &self.user_pool_id,
            &self.client_id,
            org,
            kind,
            email,
            role,
        )
    }
}

impl Drop for ProdStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("prod-like stack at the failure:{}", self.report());
        } else if std::env::var_os("TREVEN_PRODLIKE_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// The login role, password and database of a `postgres://user@host:port/db`
/// URL and the password ECS injects (the caller may name another user).
fn postgres_login(url: &str, password: Option<&str>) -> PostgresLogin {
    let rest = url.split_once("://").expect("a URL").1;
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let userinfo = authority.rsplit_once('@').expect("a user in the URL").0;
    let (user, inline) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    PostgresLogin {
        user: user.to_owned(),
        password: password
            .or(inline)
            .expect("a database password (TREVEN_MIGRATE_DATABASE_PASSWORD)")
            .to_owned(),
        database: path.split('?').next().unwrap().to_owned(),
    }
}

/// How many Bedrock calls a report's generation makes: one per generated
/// section (every section but the fixed disclaimer).
pub const GENERATED_SECTIONS: usize = 9;

/// One answer that is valid for every generated section (the generator reads
/// the members of its section's shape and ignores the rest): a title block,
/// six key judgements (strings are accepted, as for indicators and
/// requirements), one card per pillar and a long cited text, every claim
/// citing `source_id` as `[c1]`. Long enough for the report's word-count
/// check (2,000–3,000 words across the sections).
pub fn generated_section(source_id: &str) -> String {
    let sentence = "Recruiters moved seasonal agriculture offers to closed messaging groups, \
                    charging workers fees they repay from wages held back by the gang master [c1].";
    let paragraph = [sentence; 8].join(" ");
    let text = [paragraph.as_str(); 3].join("\n\n");
    let items: Vec<String> = (1..=6)
        .map(|n| format!("We assess with medium confidence that pattern {n} of recruitment debt continues through 2027 [c1]."))
        .collect();
    serde_json::json!({
        "title": "SEASONAL AGRICULTURE LABOUR EXPLOITATION",
        "country_region": "United Kingdom",
        "sector_theme": "Agriculture",
        "overview": "Recruitment into seasonal agriculture moved online and fees tie workers to gang masters [c1].",
        "items": items,
        "cards": [
            {"pillar": "recruitment", "headline": "3 in 4 offers online", "detail": "Offers moved to closed groups [c1]."},
            {"pillar": "demand", "headline": "Peak season doubles demand", "detail": "Harvest peaks drive demand for labour [c1]."},
            {"pillar": "money", "headline": "Fees of 2,000 GBP", "detail": "Recruitment fees are repaid from wages [c1]."},
        ],
        "text": text,
        "citations": [{"id": "c1", "source_id": source_id, "claim": "recruitment moved online"}],
    })
    .to_string()
}

impl super::Stack for ProdStack {
    fn gateway_url(&self) -> &str {
        &self.gateway
    }

    fn ws_url(&self) -> &str {
        &self.ws
    }

    fn sign_in(&self, org: &str, kind: &str, email: &str, role: &str) -> User {
        ProdStack::sign_in(self, org, kind, email, role)
    }

    // In prod the one agents task answers both chat and the reports
    // service's generation on Bedrock (the fake): each step queues exactly
    // what it will consume, so the organisations run one after the other.
    fn before_chat(&self, reply: &[&str]) {
        assert_eq!(
            self.bedrock.handle().pending_scripts(),
            0,
            "no script left over"
        );
        self.bedrock.push(
            treven_testkit::bedrock::Script::text(reply.iter().copied())
                .usage(treven_testkit::bedrock::Usage::new(40, 9)),
        );
    }

    fn before_generation(&self, source_id: &str) {
        assert_eq!(
            self.bedrock.handle().pending_scripts(),
            0,
            "the chat consumed its script"
        );
        let answer = generated_section(source_id);
        for _ in 0..GENERATED_SECTIONS {
            let (head, tail) = answer.split_at(answer.len() / 2);
            self.bedrock.push(
                treven_testkit::bedrock::Script::text([head, tail])
                    .usage(treven_testkit::bedrock::Usage::new(900, 400)),
            );
        }
    }
}
