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
