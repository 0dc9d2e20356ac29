//! The configuration contract between the CDK app and the binary: for the
//! dev and prod templates (`deploy/cdk.out`, written by `bash deploy/ci.sh`),
//! every task — the six ECS task definitions and the AgentCore runtime — gets
//! exactly the environment ECS would give it (`Environment` + `Secrets`, the
//! secrets holding plausible placeholder values, intrinsics resolved to
//! placeholders of the right shape), and `treven serve --target <role>
//! --check-config` run with ONLY that environment must accept it. The binary
//! refuses a missing or invalid required variable and any `TREVEN_*`
//! variable the role does not read, so a renamed variable, a new required
//! one or a leftover fails here, not in a deploy. The mutation tests prove
//! the check bites: a variable removed from a copy of the template, or an
//! unknown one added, fails naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use serde_json::Value;
use support::template::{
    Stand, TaskSpec, Template, attached_secret, is_image_file, json_key_of, mesh_keys_attribute,
    named_reference, parse_value_from,
};
use support::tls::TestCa;

/// Placeholders of the right shape for everything the templates refer to.
struct Placeholders;

impl Stand for Placeholders {
    fn reference(&self, template: &Template, id: &str) -> String {
        if let Some(name) = named_reference(template, id) {
            return name;
        }
        if let Some(secret) = attached_secret(template, id) {
            return self.reference(template, &secret);
        }
        match template.type_of(id) {
            "AWS::SecretsManager::Secret" => {
                let name = template.resource(id)["Properties"]["Name"]
                    .as_str()
                    .unwrap_or(id);
                format!("arn:aws:secretsmanager:eu-west-2:123456789012:secret:{name}-AbC123")
            }
            "AWS::Cognito::UserPool" => "eu-west-2_Pl4ceH0ld".to_owned(),
            "AWS::Cognito::UserPoolClient" => "1h57kf5cpq17m0eml12example".to_owned(),
            "AWS::S3::Bucket" => format!("{}-bucket", id.to_lowercase()),
            other => panic!("no placeholder for Ref of {id} ({other})"),
        }
    }

    fn attribute(&self, template: &Template, id: &str, attribute: &str) -> String {
        match (template.type_of(id), attribute) {
            ("AWS::RDS::DBInstance" | "AWS::RDS::DBCluster", "Endpoint.Address") => {
                "db.example.internal".to_owned()
            }
            ("AWS::RDS::DBInstance" | "AWS::RDS::DBCluster", "Endpoint.Port") => "5432".to_owned(),
            ("AWS::ElastiCache::ReplicationGroup", "PrimaryEndPoint.Address") => {
                "redis.example.internal".to_owned()
            }
            ("AWS::ElastiCache::ReplicationGroup", "PrimaryEndPoint.Port") => "6379".to_owned(),
            ("Custom::TrevenMeshKeys", attribute) => mesh_keys_attribute(attribute),
            ("AWS::Bedrock::Guardrail", "GuardrailId") => "gr4pl4ceh0ld".to_owned(),
            ("AWS::Bedrock::GuardrailVersion", "Version") => "1".to_owned(),
            (_, "Arn") => format!("arn:aws:placeholder:eu-west-2:123456789012:{id}"),
            (kind, _) => panic!("no placeholder for Fn::GetAtt {id}.{attribute} ({kind})"),
        }
    }
}

/// Every secret of the template with a value, by logical id.
fn secret_values(template: &Template, stand: &dyn Stand) -> BTreeMap<String, String> {
    let ids = template.of_type("AWS::SecretsManager::Secret");
    let mut known = BTreeMap::new();
    for _ in 0..=ids.len() {
        for id in &ids {
            if !known.contains_key(id)
                && let Some(value) = template.secret_value(id, stand, &known)
            {
                known.insert(id.clone(), value);
            }
        }
    }
    assert_eq!(known.len(), ids.len(), "every secret can be made");
    known
}

/// The environment ECS gives `task`: `Environment` resolved, and each
/// `Secrets` entry read from the secret its `ValueFrom` names (with its JSON
/// key, as ECS does).
fn task_env(template: &Template, task: &TaskSpec) -> Vec<(String, String)> {
    let stand = Placeholders;
    let secrets = secret_values(template, &stand);
    let by_arn: BTreeMap<String, &String> = secrets
        .iter()
        .map(|(id, value)| (stand.reference(template, id), value))
        .collect();
    let mut env: Vec<(String, String)> = task
        .environment
        .iter()
        .map(|(name, value)| {
            let value = template.resolve(value, &stand);
            if is_image_file(&value) {
                (name.clone(), image_file_stand_in().display().to_string())
            } else {
                (name.clone(), value)
            }
        })
        .collect();
    for (name, value_from) in &task.secrets {
        let (arn, key) = parse_value_from(&template.resolve(value_from, &stand));
        let value = by_arn
            .get(&arn)
            .unwrap_or_else(|| panic!("{}: {name} names an unknown secret {arn}", task.name));
        env.push((name.clone(), json_key_of(value, &key)));
    }
    env
}

/// A CA certificate standing in for the image's CA bundle (made once per
/// test process, kept for its life).
fn image_file_stand_in() -> std::path::PathBuf {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| TestCa::new("contract")).ca_cert.clone()
}

/// `treven serve --target <role> --check-config` with only `env` (and PATH,
/// HOME).
fn check_config(task: &TaskSpec, env: &[(String, String)]) -> Output {
    let mut command = Command::new(support::treven_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(&task.command)
        .arg("--check-config");
    command.output().expect("treven runs")
}

fn shown(output: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The six ECS tasks.
const ECS_TASKS: [&str; 7] = [
    "agents",
    "documents",
    "gateway-api",
    "gateway-ws",
    "migrate",
    "reports",
    "tenants",
];

/// Runs `--check-config` for every task of `template`; returns the failures.
fn failures_of(template: &Template) -> Vec<String> {
    let mut failures = Vec::new();
    for task in &template.tasks() {
        let env = task_env(template, task);
        let output = check_config(task, &env);
        let json_line = String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()));
        if !output.status.success() || !json_line {
            failures.push(format!(
                "{}/{} (`treven {} --check-config`):\n{}",
                template.env,
                task.name,
                task.command.join(" "),
                shown(&output)
            ));
        }
    }
    failures
}

fn every_task_passes(env_name: &str) {
    let template = Template::load(env_name);
    let names: Vec<String> = template.tasks().into_iter().map(|t| t.name).collect();
    let missing: Vec<&&str> = ECS_TASKS
        .iter()
        .filter(|t| !names.iter().any(|n| n == **t))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: no task {missing:?} (found {names:?})",
        template.path.display()
    );
    let failures = failures_of(&template);
    assert!(
        failures.is_empty(),
        "the binary refuses the configuration the CDK app gives:\n\n{}",
        failures.join("\n\n")
    );
}

/// The AgentCore runtime is optional in the CDK app (`-c agentCore=true`), so
/// the default synth may not have it; then a synth with the runtime must be
/// at `deploy/cdk.out/agentcore/Treven-<env>.template.json`.
#[test]
fn the_agentcore_runtime_satisfies_the_binary_config() {
    for env_name in ["dev", "prod"] {
        let mut template = Template::load(env_name);
        if !template.tasks().iter().any(|t| t.name == "agent-runtime") {
            let variant = template
                .path
                .parent()
                .unwrap()
                .join(format!("agentcore/Treven-{env_name}.template.json"));
            let text = std::fs::read_to_string(&variant).unwrap_or_else(|e| {
                panic!(
                    "{} has no AWS::BedrockAgentCore::Runtime (the CDK app creates it only with \
                     `-c agentCore=true`) and {} cannot be read ({e}): `bash deploy/ci.sh` must \
                     also synthesize `-c env={env_name} -c agentCore=true` there, so the \
                     runtime's environment is checked too",
                    template.path.display(),
                    variant.display()
                )
            });
            template.json = serde_json::from_str(&text).expect("JSON");
            template.path = variant;
        }
        let runtime: Vec<TaskSpec> = template
            .tasks()
            .into_iter()
            .filter(|t| t.name == "agent-runtime")
            .collect();
        assert_eq!(runtime.len(), 1, "{}: one runtime", template.path.display());
        let output = check_config(&runtime[0], &task_env(&template, &runtime[0]));
        assert!(
            output.status.success(),
            "{env_name}/agent-runtime: {}",
            shown(&output)
        );
    }
}

#[test]
fn every_dev_task_satisfies_the_binary_config() {
    every_task_passes("dev");
}

#[test]
fn every_prod_task_satisfies_the_binary_config() {
    every_task_passes("prod");
}

/// A copy of `template` with `edit` applied to the container of the task
/// family `treven-<env>-<task>`.
fn mutate(template: &Template, task: &str, edit: impl Fn(&mut Value)) -> Template {
    let mut copy = template.clone();
    let family = format!("treven-{}-{task}", template.env);
    let resources = copy.json["Resources"].as_object_mut().unwrap();
    let mut edited = 0;
    for resource in resources.values_mut() {
        if resource["Type"] == "AWS::ECS::TaskDefinition"
            && resource["Properties"]["Family"] == family.as_str()
        {
            edit(&mut resource["Properties"]["ContainerDefinitions"][0]);
            edited += 1;
        }
    }
    assert_eq!(edited, 1, "one task definition of family {family}");
    copy
}

/// `template` without `variable` (from Environment or Secrets) in `task`.
fn without(template: &Template, task: &str, variable: &str) -> Template {
    let present = template
        .task(task)
        .environment
        .iter()
        .chain(&template.task(task).secrets)
        .any(|(name, _)| name == variable);
    assert!(
        present,
        "{}: the {task} task does not set {variable}, so removing it proves nothing",
        template.path.display()
    );
    mutate(template, task, |container| {
        for key in ["Environment", "Secrets"] {
            if let Some(items) = container[key].as_array_mut() {
                items.retain(|item| item["Name"] != variable);
            }
        }
    })
}

fn assert_refused_naming(template: &Template, task: &str, variable: &str) {
    let task = template.task(task);
    let output = check_config(&task, &task_env(template, &task));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(variable),
        "{}: --check-config must fail naming {variable}; got {}",
        task.name,
        shown(&output)
    );
}

#[test]
fn a_required_variable_removed_from_the_template_fails_naming_it() {
    for env_name in ["dev", "prod"] {
        let template = Template::load(env_name);
        assert_refused_naming(
            &without(&template, "tenants", "TREVEN_TENANTS_DATABASE_URL"),
            "tenants",
            "TREVEN_TENANTS_DATABASE_URL",
        );
        assert_refused_naming(
            &without(&template, "reports", "TREVEN_REDIS_URL"),
            "reports",
            "TREVEN_REDIS_URL",
        );
        for task in ["tenants", "documents", "reports", "agents"] {
            assert_refused_naming(
                &without(&template, task, "TREVEN_MESH_CA_SEED"),
                task,
                "TREVEN_MESH_CA_SEED",
            );
        }
    }
}

/// Only the migrate task holds the owner's credentials: a service task given
/// them is refused (no role reads them), and the migrate task refuses a
/// variable `migrate` does not read.
#[test]
fn the_owner_password_is_refused_outside_the_migrate_task() {
    for env_name in ["dev", "prod"] {
        let template = Template::load(env_name);
        for task in ["tenants", "reports"] {
            let mutated = mutate(&template, task, |container| {
                container["Environment"].as_array_mut().unwrap().push(
                    serde_json::json!({"Name": "TREVEN_MIGRATE_DATABASE_PASSWORD", "Value": "x"}),
                );
            });
            assert_refused_naming(&mutated, task, "TREVEN_MIGRATE_DATABASE_PASSWORD");
        }
        let mutated = mutate(&template, "migrate", |container| {
            container["Environment"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"Name": "TREVEN_REDIS_URL", "Value": "rediss://x:6379"}));
        });
        assert_refused_naming(&mutated, "migrate", "TREVEN_REDIS_URL");
        assert_refused_naming(
            &without(&template, "migrate", "TREVEN_REPORTS_DATABASE_URL"),
            "migrate",
            "TREVEN_REPORTS_DATABASE_URL",
        );
    }
}

#[test]
fn a_variable_no_role_reads_fails_naming_it() {
    for env_name in ["dev", "prod"] {
        let template = Template::load(env_name);
        for task in ["tenants", "gateway-api"] {
            let mutated = mutate(&template, task, |container| {
                container["Environment"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"Name": "TREVEN_NOT_A_SETTING", "Value": "1"}));
            });
            assert_refused_naming(&mutated, task, "TREVEN_NOT_A_SETTING");
        }
    }
}
