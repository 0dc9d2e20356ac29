//! Gateway test harness: a Cognito user pool on the moto emulator (real
//! Cognito-issued tokens), and tokens with any claims signed by moto's own
//! pool key (which ships inside the moto package).

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

pub use treven_testkit::{Moto, free_port, tool, tools_dir};

/// A Cognito user pool with the `orgId` custom attribute and an app client.
pub struct Pool {
    pub endpoint: String,
    pub pool_id: String,
    pub client_id: String,
}

/// Calls the Cognito JSON API of moto (signatures are not checked; the
/// credential scope tells moto the region, which ends up in `iss`).
pub async fn cognito(endpoint: &str, action: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("X-Amz-Target", format!("AWSCognitoIdentityProviderService.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-2/cognito-idp/aws4_request, SignedHeaders=host, Signature=x",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers");
    let status = response.status();
    let json: serde_json::Value = response.json().await.unwrap_or_default();
    assert!(status.is_success(), "{action}: {status} {json}");
    json
}

impl Pool {
    pub async fn create(moto: &Moto) -> Self {
        let endpoint = moto.endpoint.clone();
        let pool = cognito(
            &endpoint,
            "CreateUserPool",
            serde_json::json!({
                "PoolName": "treven-test",
                "Schema": [{"Name": "orgId", "AttributeDataType": "String", "Mutable": false}],
            }),
        )
        .await;
        let pool_id = pool["UserPool"]["Id"].as_str().unwrap().to_owned();
        let client = cognito(
            &endpoint,
            "CreateUserPoolClient",
            serde_json::json!({
                "UserPoolId": pool_id,
                "ClientName": "web",
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                "ReadAttributes": ["email", "email_verified", "custom:orgId"],
            }),
        )
        .await;
        let client_id = client["UserPoolClient"]["ClientId"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            endpoint,
            pool_id,
            client_id,
        }
    }

    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.eu-west-2.amazonaws.com/{}",
            self.pool_id
        )
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/{}/.well-known/jwks.json", self.endpoint, self.pool_id)
    }

    /// Creates a user in `org` and signs in: (sub, ID token, access token).
    pub async fn sign_in(&self, email: &str, org: &str) -> (String, String, String) {
        let user = cognito(
            &self.endpoint,
            "AdminCreateUser",
            serde_json::json!({
                "UserPoolId": self.pool_id,
                "Username": email,
                "UserAttributes": [
                    {"Name": "email", "Value": email},
                    {"Name": "email_verified", "Value": "true"},
                    {"Name": "custom:orgId", "Value": org},
                ],
                "MessageAction": "SUPPRESS",
            }),
        )
        .await;
        let sub = user["User"]["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["Name"] == "sub")
            .unwrap()["Value"]
            .as_str()
            .unwrap()
            .to_owned();
        cognito(&self.endpoint, "AdminSetUserPassword", serde_json::json!({
            "UserPoolId": self.pool_id, "Username": email, "Password": "Correct-Horse-9", "Permanent": true,
        }))
        .await;
        let auth = cognito(
            &self.endpoint,
            "AdminInitiateAuth",
            serde_json::json!({
                "UserPoolId": self.pool_id,
                "ClientId": self.client_id,
                "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                "AuthParameters": {"USERNAME": email, "PASSWORD": "Correct-Horse-9"},
            }),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        (
            sub,
            result["IdToken"].as_str().unwrap().to_owned(),
            result["AccessToken"].as_str().unwrap().to_owned(),
        )
    }

    /// An ID-token-shaped JWT with `overrides` applied, signed with moto's
    /// pool key (so it verifies unless the claims are wrong). `alg` may be
    /// changed to test algorithm confusion; `kid` to test unknown keys.
    pub fn forge(&self, overrides: serde_json::Value, alg: &str, kid: &str) -> String {
        let now = chrono_now();
        let mut claims = serde_json::json!({
            "sub": "forged-sub",
            "iss": self.issuer(),
            "aud": self.client_id,
            "token_use": "id",
            "custom:orgId": "01a21000-0000-7000-8000-000000000000",
            "email": "forged@example.org",
            "email_verified": true,
            "iat": now,
            "exp": now + 600,
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let script = r#"
import json, sys
from moto.cognitoidp.models import load_resource
from joserfc import jwk, jwt
claims, alg, kid = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if alg == "HS256":
    key = jwk.OctKey.import_key("a-shared-secret-that-is-long-enough-32b")
elif alg in ("HS256-PUBKEY", "none"):
    # Signed by hand: libraries (rightly) refuse to build these attacks.
    import base64, hashlib, hmac
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head = {"alg": "HS256" if alg != "none" else "none", "kid": kid}
    signing_input = b64(json.dumps(head).encode()) + "." + b64(json.dumps(claims).encode())
    if alg == "none":
        print(signing_input + ".")
    else:
        # Key confusion: HMAC keyed with the pool's *public* key (PEM).
        public = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-public.json")["keys"][0])
        secret = public.as_pem(private=False)
        print(signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()))
    sys.exit(0)
else:
    key = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
print(jwt.encode({"alg": alg, "kid": kid}, claims, key, algorithms=[alg]))
"#;
        let output = Command::new(tools_dir().join("venv/bin/python"))
            .args(["-c", script, &claims.to_string(), alg, kid])
            .output()
            .expect("the tools venv's python");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The whole edge for one test: Postgres (fresh database) + tenants
/// in-process, a Cognito pool on moto, Redis, and the gateway on port 0.
pub struct Edge {
    pub moto: Moto,
    pub pool: Pool,
    pub base: String,
    pub http: reqwest::Client,
    pub store: treven_tenants::store::PgStore,
    pub env: treven_mesh::config::Env,
    pub pairs: Vec<(&'static str, String)>,
    /// Every principal's key (tenants and the gateway each sign with their
    /// own).
    pub keys: treven_mesh::keys::MeshKeys,
    db: treven_testkit::TestDatabase,
    pub shutdown: treven_mesh::CancellationToken,
}

impl Edge {
    pub async fn start(rate_limit_per_minute: u64) -> Self {
        Self::start_with(rate_limit_per_minute, rate_limit_per_minute * 10).await
    }

    /// Starts with per-user and per-organisation limits.
    pub async fn start_with(rate_limit_per_minute: u64, org_rate_limit_per_minute: u64) -> Self {
        use treven_mesh::config::Env;
        let moto = Moto::start();
        let pool = Pool::create(&moto).await;

        let db = treven_testkit::TestDatabase::create("treven_gw").await;
        let db_url = db.url.clone();

        let all_keys = treven_mesh::keys::MeshKeys::generate();
        let [signing, public] = all_keys.env();
        // Tenants first, started the one way tests start a role.
        let shutdown = treven_mesh::CancellationToken::new();
        let tenants_env = Env::from_pairs([
            ("TREVEN_TENANTS_DATABASE_URL", db_url.clone()),
            signing.clone(),
            public.clone(),
            ("TREVEN_SHUTDOWN_GRACE_SECS", "2".to_owned()),
        ]);
        let tenants_config = treven_tenants::TenantsConfig::from_env(&tenants_env).unwrap();
        let store = treven_tenants::store::PgStore::connect_lazy(
            tenants_config.database.clone(),
            &tenants_config.pool,
        );
        let tenants_keys = treven_mesh::keys::MeshKeySource::from_env(&tenants_env)
            .unwrap()
            .load()
            .await
            .unwrap();
        let tenants =
            treven_testkit::InProcess::start_with(shutdown.clone(), |listener, stop| async move {
                treven_tenants::serve(tenants_config, &tenants_keys, listener, stop).await
            })
            .await;
        let tenants_addr = tenants.address;
        let pairs = vec![
            ("TREVEN_TENANTS_DATABASE_URL", db_url.clone()),
            signing,
            public,
            ("TREVEN_SHUTDOWN_GRACE_SECS", "2".to_owned()),
            ("TREVEN_COGNITO_ISSUER", pool.issuer()),
            ("TREVEN_COGNITO_CLIENT_ID", pool.client_id.clone()),
            ("TREVEN_COGNITO_JWKS_URL", pool.jwks_url()),
            ("TREVEN_TENANTS_URL", format!("http://{tenants_addr}")),
            (
                "TREVEN_REDIS_URL",
                std::env::var("TREVEN_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            (
                "TREVEN_RATE_LIMIT_PER_MINUTE",
                rate_limit_per_minute.to_string(),
            ),
            (
                "TREVEN_ORG_RATE_LIMIT_PER_MINUTE",
                org_rate_limit_per_minute.to_string(),
            ),
            ("TREVEN_MAX_BODY_BYTES", "65536".to_owned()),
        ];
        let env = Env::from_pairs(pairs.clone());
        let keys = treven_mesh::keys::MeshKeySource::from_env(&env)
            .unwrap()
            .load()
            .await
            .unwrap();
        let config = treven_gateway::GatewayConfig::from_env(&env).unwrap();
        let policy = config.shutdown;
        let gateway = treven_gateway::state::Gateway::build(config, keys)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                treven_gateway::server::serve(gateway, listener, shutdown, policy).await
            });
        }
        let http = reqwest::Client::new();
        // Wait until tenants is ready behind the gateway.
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            moto,
            pool,
            base,
            http,
            store,
            env,
            pairs,
            keys: all_keys,
            db,
            shutdown,
        }
    }

    /// Another gateway instance with the same configuration (same tenants,
    /// Redis and pool); returns its base URL.
    pub async fn another_gateway(&self) -> String {
        self.gateway_with(&[]).await
    }

    /// Another gateway instance with some settings overridden.
    pub async fn gateway_with(&self, overrides: &[(&'static str, String)]) -> String {
        let mut pairs = self.pairs.clone();
        pairs.extend(overrides.iter().cloned());
        let env = treven_mesh::config::Env::from_pairs(pairs);
        let config = treven_gateway::GatewayConfig::from_env(&env).unwrap();
        let keys = treven_mesh::keys::MeshKeySource::from_env(&env)
            .unwrap()
            .load()
            .await
            .unwrap();
        let policy = config.shutdown;
        let gateway = treven_gateway::state::Gateway::build(config, keys)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            treven_gateway::server::serve(gateway, listener, shutdown, policy).await
        });
        base
    }

    /// Signs a new Cognito user into `org` and, when `role` is given, adds
    /// them to tenants: (sub, ID token).
    pub async fn member(
        &self,
        email: &str,
        org: treven_mesh::OrgId,
        role: Option<treven_mesh::Role>,
    ) -> (String, String) {
        use treven_tenants::model::{CognitoSub, Email, Name};
        let (sub, id_token, _) = self.pool.sign_in(email, &org.to_string()).await;
        if let Some(role) = role {
            self.store
                .admin_ensure_user(
                    org,
                    &Email::parse("email", email).unwrap(),
                    &Name::parse("name", email.split('@').next().unwrap()).unwrap(),
                    role,
                    Some(&CognitoSub::parse("sub", &sub).unwrap()),
                )
                .await
                .unwrap();
        }
        (sub, id_token)
    }

    /// A new organisation.
    pub async fn org(&self, name: &str) -> treven_mesh::OrgId {
        use treven_tenants::model::{Name, OrgKind};
        self.store
            .admin_ensure_org(&Name::parse("name", name).unwrap(), OrgKind::Ngo)
            .await
            .unwrap()
            .id
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.store.pool().close().await;
        self.db.drop().await;
    }
}

/// A WebSocket listener of its own gateway instance: its own `Gateway`
/// state and its own Redis subscription, sharing tenants, the Cognito pool
/// and Redis with the edge (so two of them are two instances of a fleet).
pub struct WsInstance {
    /// `ws://127.0.0.1:<port>/ws`.
    pub url: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The instance's registry (connections, bridge state).
    pub hub: std::sync::Arc<treven_gateway::ws::hub::Hub>,
}

impl Edge {
    /// Starts a WebSocket gateway instance with `overrides` on top of the
    /// edge's settings, checking subscriptions with `authorizer` (the real
    /// gRPC checks when `None`); returns once its Redis bridge is up.
    pub async fn ws_instance(
        &self,
        overrides: &[(&'static str, String)],
        authorizer: Option<std::sync::Arc<dyn treven_gateway::ws::authorize::ChannelAuthorizer>>,
    ) -> WsInstance {
        let mut pairs = self.pairs.clone();
        pairs.extend(overrides.iter().cloned());
        let env = treven_mesh::config::Env::from_pairs(pairs);
        let config = treven_gateway::GatewayConfig::from_env(&env).unwrap();
        let keys = treven_mesh::keys::MeshKeySource::from_env(&env)
            .unwrap()
            .load()
            .await
            .unwrap();
        let policy = config.shutdown;
        let gateway = treven_gateway::state::Gateway::build(config, keys)
            .await
            .unwrap();
        let mut server = treven_gateway::ws::WsServer::new(gateway).unwrap();
        if let Some(authorizer) = authorizer {
            server = server.with_authorizer(authorizer);
        }
        let hub = server.hub();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move { server.serve(listener, shutdown, policy).await });
        for _ in 0..200 {
            if hub.bridge_connected() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(
            hub.bridge_connected(),
            "the event bridge subscribed to redis"
        );
        WsInstance {
            url: format!("ws://{address}/ws"),
            base: format!("http://{address}"),
            hub,
        }
    }
}

/// The gRPC status and message of a gRPC-web answer: from the headers
/// (trailers-only) or from the trailer frame of a binary body.
pub struct GrpcWebAnswer {
    /// The HTTP status.
    pub http: u16,
    /// `grpc-status`.
    pub status: Option<String>,
    /// `grpc-message`.
    pub message: String,
    /// The reply messages (binary mode only).
    pub messages: Vec<Vec<u8>>,
}

/// Calls `path` on `base` over gRPC-web (binary, or base64 `text`) with one
/// request message (`payload`, encoded) and an optional bearer token.
pub async fn grpc_web(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    text: bool,
    payload: &[u8],
) -> GrpcWebAnswer {
    use base64::Engine as _;
    let mut empty = vec![0u8];
    empty.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    empty.extend_from_slice(payload);
    let (content_type, body) = if text {
        (
            "application/grpc-web-text",
            base64::engine::general_purpose::STANDARD
                .encode(&empty)
                .into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", empty)
    };
    let mut request = http
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let http = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let mut status = header("grpc-status");
    let mut message = header("grpc-message").unwrap_or_default();
    let body = response.bytes().await.unwrap();
    let mut messages = Vec::new();
    if !text {
        let mut rest = &body[..];
        while rest.len() >= 5 {
            let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let payload = &rest[5..5 + length];
            if rest[0] & 0x80 != 0 {
                for line in String::from_utf8_lossy(payload).lines() {
                    if let Some(value) = line.strip_prefix("grpc-status:") {
                        status = Some(value.trim().to_owned());
                    }
                    if let Some(value) = line.strip_prefix("grpc-message:") {
                        message = value.trim().to_owned();
                    }
                }
            } else {
                messages.push(payload.to_vec());
            }
            rest = &rest[5 + length..];
        }
    }
    GrpcWebAnswer {
        http,
        status,
        message,
        messages,
    }
}
