//! The synthesized CloudFormation template of the CDK app
//! (`deploy/cdk.out/Treven-<env>.template.json`, written by
//! `bash deploy/ci.sh`), read the way ECS and AgentCore read it: each task's
//! command, `Environment` and `Secrets`, with CloudFormation intrinsics
//! (`Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::Sub`)
//! resolved against a [`Stand`]: the local stand-ins of the prod-like stack
//! (`support/prodlike.rs`) or placeholders of the right shape (the
//! configuration contract test).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// One synthesized stack template.
#[derive(Debug, Clone)]
pub struct Template {
    /// `dev` or `prod`.
    pub env: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The template itself (tests may mutate a copy).
    pub json: Value,
}

/// One task as the platform runs it: an ECS task definition's container, or
/// the AgentCore runtime.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// `gateway-api`, `gateway-ws`, `tenants`, `documents`, `reports`,
    /// `agents` (the task family without `treven-<env>-`), or
    /// `agent-runtime`.
    pub name: String,
    /// The container command, e.g. `serve --target tenants`.
    pub command: Vec<String>,
    /// `Environment`: name → unresolved value.
    pub environment: Vec<(String, Value)>,
    /// `Secrets`: name → unresolved `ValueFrom`.
    pub secrets: Vec<(String, Value)>,
    /// The container port (the gateway tasks' listener, the runtime's).
    pub port: Option<u16>,
}

impl TaskSpec {
    /// The role after `--target`.
    pub fn role(&self) -> String {
        let at = self
            .command
            .iter()
            .position(|a| a == "--target")
            .unwrap_or_else(|| panic!("{}: no --target in {:?}", self.name, self.command));
        self.command[at + 1].clone()
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The AgentCore runtime's command: the template holds only its image, whose
/// `agentcore` stage (deploy/Dockerfile) runs this.
pub const AGENT_RUNTIME_COMMAND: [&str; 3] = ["serve", "--target", "agent-runtime"];

impl Template {
    /// Reads `deploy/cdk.out/Treven-<env>.template.json`; fails (never skips)
    /// naming the command that writes it.
    pub fn load(env: &str) -> Template {
        Template::load_path(env, &format!("deploy/cdk.out/Treven-{env}.template.json"))
    }

    /// Reads the variant synthesized with `-c agentCore=true`
    /// (`deploy/cdk.out/agentcore/Treven-<env>.template.json`): the six ECS
    /// tasks and the AgentCore runtime.
    pub fn load_with_agent_runtime(env: &str) -> Template {
        Template::load_path(
            env,
            &format!("deploy/cdk.out/agentcore/Treven-{env}.template.json"),
        )
    }

    fn load_path(env: &str, relative: &str) -> Template {
        let path = root().join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} cannot be read ({e}): synthesize the CDK app first with \
                 `bash deploy/ci.sh` (`cargo xtask test` runs it before the tests)",
                path.display()
            )
        });
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        Template {
            env: env.to_owned(),
            path,
            json,
        }
    }

    /// Every resource by logical id.
    pub fn resources(&self) -> &Map<String, Value> {
        self.json["Resources"]
            .as_object()
            .expect("the template has Resources")
    }

    /// One resource.
    pub fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("{}: no resource {id}", self.path.display()))
    }

    /// The type of a resource.
    pub fn type_of(&self, id: &str) -> &str {
        self.resource(id)["Type"].as_str().unwrap_or_default()
    }

    /// Logical ids of every resource of `kind`.
    pub fn of_type(&self, kind: &str) -> Vec<String> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every ECS task definition's `treven` container, and the AgentCore
    /// runtime when the template has one.
    pub fn tasks(&self) -> Vec<TaskSpec> {
        let mut tasks = Vec::new();
        let prefix = format!("treven-{}-", self.env);
        for id in self.of_type("AWS::ECS::TaskDefinition") {
            let properties = &self.resource(&id)["Properties"];
            let family = properties["Family"].as_str().unwrap_or(&id);
            let name = family.strip_prefix(&prefix).unwrap_or(family).to_owned();
            let containers = properties["ContainerDefinitions"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: no ContainerDefinitions"));
            // The `treven` container; the other is the metrics sidecar
            // (deploy/lib/observability.ts), which reads no TREVEN_* variable.
            let container = containers
                .iter()
                .find(|c| c["Name"] == "treven")
                .unwrap_or_else(|| panic!("{id}: no treven container"));
            assert!(
                containers.len() <= 2,
                "{id}: the treven container and at most its metrics sidecar"
            );
            let pairs = |key: &str, value: &str| -> Vec<(String, Value)> {
                container[key]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|item| {
                                (
                                    item["Name"].as_str().expect("Name").to_owned(),
                                    item[value].clone(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            tasks.push(TaskSpec {
                name,
                command: container["Command"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{id}: no Command"))
                    .iter()
                    .map(|a| a.as_str().expect("a literal argument").to_owned())
                    .collect(),
                environment: pairs("Environment", "Value"),
                secrets: pairs("Secrets", "ValueFrom"),
                port: container["PortMappings"][0]["ContainerPort"]
                    .as_u64()
                    .map(|p| u16::try_from(p).expect("a port")),
            });
        }
        for id in self.of_type("AWS::BedrockAgentCore::Runtime") {
            let properties = &self.resource(&id)["Properties"];
            let environment = properties["EnvironmentVariables"]
                .as_object()
                .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            tasks.push(TaskSpec {
                name: "agent-runtime".to_owned(),
                command: AGENT_RUNTIME_COMMAND.map(str::to_owned).to_vec(),
                environment,
                secrets: Vec::new(),
                port: Some(8080),
            });
        }
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        tasks
    }

    /// One task by name.
    pub fn task(&self, name: &str) -> TaskSpec {
        self.tasks()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{}: no task {name}", self.path.display()))
    }

    /// Resolves `value` (a literal or an intrinsic) to one string.
    pub fn resolve(&self, value: &Value, stand: &dyn Stand) -> String {
        match self.eval(value, stand) {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => panic!("{value} resolved to {other}, not a string"),
        }
    }

    fn eval(&self, value: &Value, stand: &dyn Stand) -> Value {
        let Some(object) = value.as_object().filter(|o| o.len() == 1) else {
            return value.clone();
        };
        let (function, argument) = object.iter().next().expect("one entry");
        match function.as_str() {
            "Ref" => {
                let id = argument.as_str().expect("Ref names a string");
                Value::String(match pseudo_parameter(id, &self.env) {
                    Some(value) => value,
                    None => stand.reference(self, id),
                })
            }
            "Fn::GetAtt" => {
                let (id, attribute) = match argument {
                    Value::Array(parts) => (
                        parts[0].as_str().expect("GetAtt id").to_owned(),
                        parts[1].as_str().expect("GetAtt attribute").to_owned(),
                    ),
                    Value::String(dotted) => {
                        let (id, attribute) = dotted.split_once('.').expect("id.attribute");
                        (id.to_owned(), attribute.to_owned())
                    }
                    other => panic!("Fn::GetAtt {other}"),
                };
                Value::String(stand.attribute(self, &id, &attribute))
            }
            "Fn::Join" => {
                let delimiter = argument[0].as_str().expect("Join delimiter");
                let parts = match self.eval(&argument[1], stand) {
                    Value::Array(parts) => parts,
                    other => panic!("Fn::Join of {other}"),
                };
                Value::String(
                    parts
                        .iter()
                        .map(|p| self.resolve(p, stand))
                        .collect::<Vec<_>>()
                        .join(delimiter),
                )
            }
            "Fn::Split" => {
                let delimiter = argument[0].as_str().expect("Split delimiter");
                let source = self.resolve(&argument[1], stand);
                Value::Array(
                    source
                        .split(delimiter)
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )
            }
            "Fn::Select" => {
                let index = match self.eval(&argument[0], stand) {
                    Value::Number(n) => n.as_u64().expect("an index"),
                    Value::String(s) => s.parse().expect("an index"),
                    other => panic!("Fn::Select index {other}"),
                };
                match self.eval(&argument[1], stand) {
                    Value::Array(items) => {
                        self.eval(&items[usize::try_from(index).expect("an index")], stand)
                    }
                    other => panic!("Fn::Select from {other}"),
                }
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Value::String(text) => (text.clone(), Map::new()),
                    Value::Array(parts) => (
                        parts[0].as_str().expect("Sub text").to_owned(),
                        parts[1].as_object().cloned().unwrap_or_default(),
                    ),
                    other => panic!("Fn::Sub {other}"),
                };
                Value::String(self.substitute(&text, &variables, stand))
            }
            _ if function.starts_with("Fn::") => {
                panic!("{}: cannot resolve {function} locally", self.path.display())
            }
            _ => value.clone(),
        }
    }

    fn substitute(&self, text: &str, variables: &Map<String, Value>, stand: &dyn Stand) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').expect("a closing }");
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(&self.resolve(value, stand));
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&stand.attribute(self, id, attribute));
            } else {
                out.push_str(&self.resolve(&serde_json::json!({ "Ref": name }), stand));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The value of a secret as CloudFormation would create it:
    /// `GenerateSecretString` (a generated string of its length, or
    /// `SecretStringTemplate` with the generated `GenerateStringKey`), or
    /// `SecretString` resolved (dynamic references `{{resolve:secretsmanager:…}}`
    /// looked up in `known`, the values made so far by logical id).
    /// `None` while a secret it refers to is not made yet.
    pub fn secret_value(
        &self,
        id: &str,
        stand: &dyn Stand,
        known: &BTreeMap<String, String>,
    ) -> Option<String> {
        let properties = &self.resource(id)["Properties"];
        if let Some(generate) = properties.get("GenerateSecretString") {
            let length = generate["PasswordLength"]
                .as_u64()
                .map_or(32, |n| usize::try_from(n).expect("a length"));
            let generated = random_alphanumeric(length);
            return Some(match generate["GenerateStringKey"].as_str() {
                Some(key) => {
                    let mut object: Map<String, Value> = generate["SecretStringTemplate"]
                        .as_str()
                        .map(|t| serde_json::from_str(t).expect("SecretStringTemplate is JSON"))
                        .unwrap_or_default();
                    object.insert(key.to_owned(), Value::String(generated));
                    Value::Object(object).to_string()
                }
                None => generated,
            });
        }
        if properties.get("SecretString").is_none()
            && let Some(principal) = mesh_key_secret_principal(self, id)
        {
            // Filled by the Custom::TrevenMeshKeys Lambda: `principal:seed`.
            let signer = stand_in_mesh_keys()
                .signer(principal)
                .expect("every principal's key");
            return Some(format!("{principal}:{}", signer.key().to_base64()));
        }
        let text = self.resolve(
            properties.get("SecretString").unwrap_or_else(|| {
                panic!("secret {id}: neither GenerateSecretString nor SecretString")
            }),
            stand,
        );
        resolve_dynamic_references(&text, self, stand, known)
    }
}

/// Replaces `{{resolve:secretsmanager:<arn>:SecretString:<key>::}}` by the
/// value (or its JSON key) of the secret whose ARN `stand` gave.
fn resolve_dynamic_references(
    text: &str,
    template: &Template,
    stand: &dyn Stand,
    known: &BTreeMap<String, String>,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{resolve:secretsmanager:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{{resolve:secretsmanager:".len()..];
        let end = after.find("}}").expect("a closing }}");
        let reference = &after[..end];
        // <secret-id>:SecretString:<json-key>:<version-stage>:<version-id>
        let (secret, tail) = reference
            .split_once(":SecretString")
            .unwrap_or((reference, ""));
        let json_key = tail.trim_start_matches(':').split(':').next().unwrap_or("");
        if secret.starts_with("pending-secret:") {
            return None;
        }
        let id = template
            .of_type("AWS::SecretsManager::Secret")
            .into_iter()
            .find(|id| stand.reference(template, id) == secret)
            .unwrap_or_else(|| panic!("dynamic reference to an unknown secret {secret}"));
        let value = known.get(&id)?;
        out.push_str(&json_key_of(value, json_key));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// A file the container image carries (the RDS CA bundle,
/// `/etc/treven/….pem`): locally, the run's CA file stands in for it.
pub fn is_image_file(value: &str) -> bool {
    value.starts_with('/') && [".pem", ".crt"].iter().any(|ext| value.ends_with(ext))
}

/// `value`, or its `key` member when `key` is not empty.
pub fn json_key_of(value: &str, key: &str) -> String {
    if key.is_empty() {
        return value.to_owned();
    }
    let json: Value = serde_json::from_str(value)
        .unwrap_or_else(|e| panic!("a secret read with the key {key} is not JSON: {e}"));
    json[key]
        .as_str()
        .unwrap_or_else(|| panic!("the secret has no string key {key}"))
        .to_owned()
}

/// An ECS `Secrets` `ValueFrom`: the secret's ARN and the JSON key, if any
/// (`arn:aws:secretsmanager:<region>:<account>:secret:<name>[:<json-key>:<version-stage>:<version-id>]`).
pub fn parse_value_from(value_from: &str) -> (String, String) {
    let parts: Vec<&str> = value_from.split(':').collect();
    assert!(
        parts.len() >= 7 && parts[2] == "secretsmanager",
        "ValueFrom {value_from} is not a Secrets Manager ARN"
    );
    let arn = parts[..7].join(":");
    let key = parts.get(7).copied().unwrap_or_default().to_owned();
    (arn, key)
}

/// AWS pseudo parameters, as in eu-west-2.
fn pseudo_parameter(name: &str, env: &str) -> Option<String> {
    Some(match name {
        "AWS::Region" => "eu-west-2".to_owned(),
        "AWS::AccountId" => "123456789012".to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::URLSuffix" => "amazonaws.com".to_owned(),
        "AWS::StackName" => format!("Treven-{env}"),
        "AWS::NoValue" => String::new(),
        _ => return None,
    })
}

/// `n` random letters and digits.
pub fn random_alphanumeric(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            if out.len() < n {
                out.push(char::from(CHARS[usize::from(*byte) % CHARS.len()]));
            }
        }
    }
    out
}

/// What `Ref` and `Fn::GetAtt` of a resource are, where the template runs.
pub trait Stand {
    /// `Ref` of the resource `id`.
    fn reference(&self, template: &Template, id: &str) -> String;
    /// `Fn::GetAtt` of `attribute` of the resource `id`.
    fn attribute(&self, template: &Template, id: &str, attribute: &str) -> String;
}

/// The mesh keys the stand-ins of the `Custom::TrevenMeshKeys` resource
/// hand out (one set per test process): what its Lambda would generate.
pub fn stand_in_mesh_keys() -> &'static treven_mesh::keys::MeshKeys {
    static KEYS: std::sync::OnceLock<treven_mesh::keys::MeshKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(treven_mesh::keys::MeshKeys::generate)
}

/// The principal whose signing key the `Custom::TrevenMeshKeys` resource
/// writes into secret `id` (the secrets are created empty; the resource's
/// Lambda fills them), if it is one of those.
pub fn mesh_key_secret_principal(template: &Template, id: &str) -> Option<treven_mesh::Principal> {
    template
        .of_type("Custom::TrevenMeshKeys")
        .iter()
        .filter_map(|resource| template.resource(resource)["Properties"]["Secrets"].as_object())
        .flat_map(|secrets| secrets.iter())
        .find(|(_, reference)| reference["Ref"].as_str() == Some(id))
        .map(|(principal, _)| principal.parse().expect("a principal name"))
}

/// What the `Custom::TrevenMeshKeys` Lambda answers: `PublicKeys`, every
/// principal's public key (from [`stand_in_mesh_keys`]).
pub fn mesh_keys_attribute(attribute: &str) -> String {
    match attribute {
        "PublicKeys" => stand_in_mesh_keys().public().to_list(),
        other => panic!("Custom::TrevenMeshKeys has no attribute {other}"),
    }
}

/// `Ref` of a resource whose name is set in the template: a bucket's or
/// table's name, which is its `Ref` in AWS too.
pub fn named_reference(template: &Template, id: &str) -> Option<String> {
    let properties = &template.resource(id)["Properties"];
    match template.type_of(id) {
        "AWS::S3::Bucket" => properties["BucketName"].as_str().map(str::to_owned),
        "AWS::DynamoDB::Table" => properties["TableName"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The secret a `SecretTargetAttachment` attaches (its `Ref` is that
/// secret's ARN).
pub fn attached_secret(template: &Template, id: &str) -> Option<String> {
    (template.type_of(id) == "AWS::SecretsManager::SecretTargetAttachment").then(|| {
        template.resource(id)["Properties"]["SecretId"]["Ref"]
            .as_str()
            .expect("SecretId is a Ref")
            .to_owned()
    })
}
