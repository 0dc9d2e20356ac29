//! Every call tenants makes to the Cognito user pool, with typed errors.
//!
//! Users are addressed by their Cognito username: the subject once known
//! (the pool signs users in by e-mail, so Cognito's own username is the
//! subject), else the e-mail, which Cognito accepts as an alias. Both
//! operations converge: calling one twice, or after a crash halfway, ends in
//! the same place.

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, DeliveryMediumType};
use treven_mesh::{OrgId, Role};

/// The custom attribute naming a user's organisation (immutable in the pool).
pub const ORG_ATTRIBUTE: &str = "custom:orgId";

/// The group of each role (created with the pool: `deploy/lib/identity.ts`,
/// `xtask/dev_aws.py provision`).
pub fn group_of(role: Role) -> &'static str {
    role.as_str()
}

/// Why a Cognito operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Cognito could not be reached, throttled or failed: try again later.
    #[error("cognito: {0:#}")]
    Retry(anyhow::Error),
    /// Cognito's state forbids the change for good (e.g. the e-mail is a
    /// user of another organisation); retrying will not help.
    #[error("{0}")]
    Refused(String),
}

type Result<T> = std::result::Result<T, DirectoryError>;

fn retry<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> DirectoryError {
    move |error| DirectoryError::Retry(anyhow::Error::new(error).context(operation))
}

/// What tenants wants a Cognito user to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUser<'a> {
    /// The username to find them by (subject or e-mail).
    pub username: &'a str,
    /// Their e-mail address (verified: the admin typed it).
    pub email: &'a str,
    /// Their organisation.
    pub org_id: OrgId,
    /// Their role (one group of the three).
    pub role: Role,
}

/// A user pool.
#[derive(Debug, Clone)]
pub struct Directory {
    client: Client,
    pool_id: String,
}

/// A Cognito user as found.
struct Found {
    username: String,
    email: Option<String>,
    org: Option<String>,
    sub: Option<String>,
    enabled: bool,
}

impl Directory {
    /// The pool `pool_id`, reached with `sdk` (region, credentials,
    /// endpoint).
    pub fn new(sdk: &aws_config::SdkConfig, pool_id: &str) -> Self {
        Self {
            client: Client::new(sdk),
            pool_id: pool_id.to_owned(),
        }
    }

    /// The pool id.
    pub fn pool_id(&self) -> &str {
        &self.pool_id
    }

    /// Makes the Cognito user match `want`, inviting them when there is
    /// none: AdminCreateUser with `email`, `email_verified` and
    /// `custom:orgId`, the invitation e-mail sent by Cognito with a
    /// temporary password it generates. An existing user of the same
    /// organisation (a retry, or one removed earlier) is reconciled: e-mail,
    /// enabled. Then the role's group is the only role group they are in.
    /// Returns their subject.
    #[tracing::instrument(skip_all, fields(org_id = %want.org_id, role = want.role.as_str()))]
    pub async fn ensure_user(&self, want: &DesiredUser<'_>) -> Result<String> {
        let found = match self.find(want.username).await? {
            Some(found) => found,
            None => match self.create(want).await? {
                Some(created) => created,
                // Created meanwhile (or it exists under its e-mail): reconcile.
                None => self.find(want.email).await?.ok_or_else(|| {
                    DirectoryError::Retry(anyhow::anyhow!(
                        "cognito said the user exists but does not find it"
                    ))
                })?,
            },
        };
        let org = want.org_id.to_string();
        if found.org.as_deref() != Some(org.as_str()) {
            return Err(DirectoryError::Refused(
                "the e-mail address is a Cognito user of another organisation".to_owned(),
            ));
        }
        if found.email.as_deref() != Some(want.email) {
            self.client
                .admin_update_user_attributes()
                .user_pool_id(&self.pool_id)
                .username(&found.username)
                .user_attributes(attribute("email", want.email)?)
                .user_attributes(attribute("email_verified", "true")?)
                .send()
                .await
                .map_err(|error| {
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_alias_exists_exception())
                    {
                        DirectoryError::Refused(
                            "the new e-mail address is another Cognito user's".to_owned(),
                        )
                    } else {
                        retry("AdminUpdateUserAttributes")(error)
                    }
                })?;
        }
        if !found.enabled {
            self.client
                .admin_enable_user()
                .user_pool_id(&self.pool_id)
                .username(&found.username)
                .send()
                .await
                .map_err(retry("AdminEnableUser"))?;
        }
        self.client
            .admin_add_user_to_group()
            .user_pool_id(&self.pool_id)
            .username(&found.username)
            .group_name(group_of(want.role))
            .send()
            .await
            .map_err(retry("AdminAddUserToGroup"))?;
        for other in Role::MEMBERS.iter().filter(|r| **r != want.role) {
            self.client
                .admin_remove_user_from_group()
                .user_pool_id(&self.pool_id)
                .username(&found.username)
                .group_name(group_of(*other))
                .send()
                .await
                .map_err(retry("AdminRemoveUserFromGroup"))?;
        }
        Ok(found.sub.unwrap_or(found.username))
    }

    /// Disables the Cognito user `username` of `org` and signs them out
    /// everywhere (their refresh tokens stop working). Nothing to do when
    /// there is no such user, or it belongs to another organisation (never
    /// touched).
    #[tracing::instrument(skip_all, fields(org_id = %org))]
    pub async fn disable_user(&self, username: &str, org: OrgId) -> Result<()> {
        let Some(found) = self.find(username).await? else {
            return Ok(());
        };
        let org = org.to_string();
        if found.org.as_deref() != Some(org.as_str()) {
            tracing::warn!("cognito user of another organisation left alone on removal");
            return Ok(());
        }
        if found.enabled {
            self.client
                .admin_disable_user()
                .user_pool_id(&self.pool_id)
                .username(&found.username)
                .send()
                .await
                .map_err(retry("AdminDisableUser"))?;
        }
        self.client
            .admin_user_global_sign_out()
            .user_pool_id(&self.pool_id)
            .username(&found.username)
            .send()
            .await
            .map_err(retry("AdminUserGlobalSignOut"))?;
        Ok(())
    }

    async fn find(&self, username: &str) -> Result<Option<Found>> {
        match self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(user) => {
                let value = |name: &str| {
                    user.user_attributes()
                        .iter()
                        .find(|a| a.name() == name)
                        .and_then(|a| a.value())
                        .map(str::to_owned)
                };
                Ok(Some(Found {
                    username: user.username().to_owned(),
                    email: value("email"),
                    org: value(ORG_ATTRIBUTE),
                    sub: value("sub"),
                    enabled: user.enabled(),
                }))
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_user_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(retry("AdminGetUser")(error)),
        }
    }

    /// AdminCreateUser; `None` when the username exists already.
    async fn create(&self, want: &DesiredUser<'_>) -> Result<Option<Found>> {
        let created = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(want.email)
            .user_attributes(attribute("email", want.email)?)
            .user_attributes(attribute("email_verified", "true")?)
            .user_attributes(attribute(ORG_ATTRIBUTE, &want.org_id.to_string())?)
            .desired_delivery_mediums(DeliveryMediumType::Email)
            .send()
            .await;
        let created = match created {
            Ok(created) => created,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_username_exists_exception()) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(retry("AdminCreateUser")(error)),
        };
        tracing::info!("cognito user invited");
        let user = created.user();
        let value = |name: &str| {
            user.and_then(|u| u.attributes().iter().find(|a| a.name() == name))
                .and_then(|a| a.value())
                .map(str::to_owned)
        };
        Ok(Some(Found {
            username: user
                .and_then(|u| u.username())
                .unwrap_or(want.email)
                .to_owned(),
            email: value("email"),
            org: value(ORG_ATTRIBUTE),
            sub: value("sub"),
            enabled: true,
        }))
    }
}

fn attribute(name: &str, value: &str) -> Result<AttributeType> {
    AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .map_err(retry("AttributeType"))
}
