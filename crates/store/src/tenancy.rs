//! Organisations, users (argon2 password hashes), their roles per
//! organisation, and projects inside an organisation.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::conflict_on_unique;
use crate::{new_id, now_ms, Result, Store, StoreError};

/// An organisation: the unit of tenancy and billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// `org_…`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A person who can log in to the web app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `user_…`
    pub id: String,
    /// Lower-cased, unique across the installation.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A user's role in one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, billing and deleting the organisation included.
    Owner,
    /// Manages keys, members, projects and budgets.
    Admin,
    /// Uses models and the chat app.
    Member,
    /// Reads usage and settings only.
    Reader,
}

impl Role {
    /// The stored name: `owner`, `admin`, `member` or `reader`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Reader => "reader",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Role> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "reader" => Ok(Role::Reader),
            other => Err(StoreError::InvalidRequest(format!(
                "unknown role {other:?}"
            ))),
        }
    }
}

/// A person's membership of one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The person.
    pub user: User,
    /// Their role there.
    pub role: Role,
    /// When they joined, unix milliseconds.
    pub added_at: i64,
}

/// A project inside an organisation; API keys and usage belong to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// `proj_…`
    pub id: String,
    /// The owning organisation.
    pub org_id: String,
    /// Display name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The project's rate limits (over all its keys together).
    pub limits: crate::RateLimits,
    /// When it was archived (unix milliseconds): its keys no longer
    /// authenticate and it takes no new ones.
    pub archived_at: Option<i64>,
}

/// The columns [`project_from_row`] reads.
const PROJECT_COLUMNS: &str = "id, org_id, name, created_at, rpm_limit, tpm_limit, archived_at";

fn org_from_row(row: &AnyRow) -> Result<Organization> {
    Ok(Organization {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        limits: crate::RateLimits {
            rpm: crate::keys::limit_from_db(row.try_get("rpm_limit")?),
            tpm: crate::keys::limit_from_db(row.try_get("tpm_limit")?),
        },
        archived_at: row.try_get("archived_at")?,
    })
}

/// Hashes `password` with argon2id off the async executor.
pub(crate) async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Password(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::Password(e.to_string()))?
}

/// Checks `password` against a stored PHC string off the async executor.
async fn password_matches(password: String, stored: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| StoreError::Password(e.to_string()))?
}

/// A new user (not yet stored): the email lower-cased and checked.
pub(crate) fn new_user(email: &str, name: &str) -> Result<User> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || !email.contains('@') {
        return Err(StoreError::InvalidRequest("email must contain '@'".into()));
    }
    Ok(User {
        id: new_id("user"),
        email,
        name: name.to_owned(),
        created_at: now_ms(),
    })
}

/// Inserts `user` with its password hash; a taken email is a Conflict.
pub(crate) async fn insert_user<'c, E>(executor: E, user: &User, hash: &str) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(hash)
    .bind(user.created_at)
    .execute(executor)
    .await
    .map_err(|e| conflict_on_unique(e, "email already registered"))?;
    Ok(())
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates an organisation.
    pub async fn create_org(&self, name: &str) -> Result<Organization> {
        let org = Organization {
            id: new_id("org"),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(self.pool())
            .await?;
        Ok(org)
    }

    /// One organisation by id.
    pub async fn get_org(&self, org_id: &str) -> Result<Organization> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("organization"))?;
        org_from_row(&row)
    }

    /// The oldest organisation called exactly `name`, if any. Names are not
    /// unique; this is a system look-up (names on a command line), not a
    /// tenant read.
    pub async fn find_org_by_name(&self, name: &str) -> Result<Option<Organization>> {
        let row = sqlx::query(
            "SELECT id, name, created_at FROM organizations WHERE name = $1 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Every organisation, oldest first. A system operation (administration
    /// from the command line), not a tenant read.
    pub async fn list_orgs(&self) -> Result<Vec<Organization>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM organizations ORDER BY created_at, id")
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// Creates a user with an argon2id hash of `password`; the email is
    /// lower-cased and must be unused ([`StoreError::Conflict`] otherwise).
    pub async fn create_user(&self, email: &str, name: &str, password: &str) -> Result<User> {
        let user = new_user(email, name)?;
        let hash = hash_password(password.to_owned()).await?;
        insert_user(self.pool(), &user, &hash).await?;
        Ok(user)
    }

    /// The user with this email and password, or [`StoreError::Unauthorized`]
    /// (the same answer for an unknown email and a wrong password).
    pub async fn verify_password(&self, email: &str, password: &str) -> Result<User> {
        let row = sqlx::query(
            "SELECT id, email, name, password_hash, created_at FROM users WHERE email = $1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Unauthorized("wrong email or password"));
        };
        let stored: String = row.try_get("password_hash")?;
        if password_matches(password.to_owned(), stored).await? {
            user_from_row(&row)
        } else {
            Err(StoreError::Unauthorized("wrong email or password"))
        }
    }

    /// Gives `user_id` the `role` in `org_id`, replacing any role it had.
    pub async fn set_role(&self, org_id: &str, user_id: &str, role: Role) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("organization or user")
            }
            _ => StoreError::Database(e),
        })?;
        Ok(())
    }

    /// The user's role in the organisation; [`StoreError::NotFound`] when the
    /// user is not a member.
    pub async fn get_role(&self, org_id: &str, user_id: &str) -> Result<Role> {
        let role: String =
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?
                .ok_or(StoreError::NotFound("membership"))?;
        role.parse()
            .map_err(|_| StoreError::Corrupt(format!("role {role:?}")))
    }

    /// Removes the user from the organisation.
    pub async fn remove_member(&self, org_id: &str, user_id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("membership"));
        }
        Ok(())
    }

    /// The organisation's members with their roles, oldest first.
    pub async fn list_members(&self, org_id: &str) -> Result<Vec<(User, Role)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, u.created_at, m.role FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let role = role
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("role {role:?}")))?;
                Ok((user_from_row(row)?, role))
            })
            .collect()
    }

    /// The organisation's members with their roles and when they joined,
    /// oldest member first.
    pub async fn list_memberships(&self, org_id: &str) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at AS added_at \
             FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 ORDER BY m.created_at, u.id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(Membership {
                    user: user_from_row(row)?,
                    role: role
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("role {role:?}")))?,
                    added_at: row.try_get("added_at")?,
                })
            })
            .collect()
    }

    /// Creates a project in the organisation.
    pub async fn create_project(&self, org_id: &str, name: &str) -> Result<Project> {
        let project = Project {
            id: new_id("proj"),
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            created_at: now_ms(),
            limits: crate::RateLimits::default(),
            archived_at: None,
        };
        sqlx::query("INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&project.id)
            .bind(&project.org_id)
            .bind(&project.name)
            .bind(project.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound("organization")
                }
                _ => StoreError::Database(e),
            })?;
        Ok(project)
    }

    /// One project of the organisation; another organisation's is NotFound.
    pub async fn get_project(&self, org_id: &str, project_id: &str) -> Result<Project> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(project_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("project"))?;
        project_from_row(&row)
    }

    /// The organisation's projects, oldest first.
    pub async fn list_projects(&self, org_id: &str) -> Result<Vec<Project>> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// Sets the project's rate limits; returns the project as it now is.
    pub async fn set_project_limits(
        &self,
        org_id: &str,
        project_id: &str,
        limits: crate::RateLimits,
    ) -> Result<Project> {
        let done = sqlx::query(
            "UPDATE projects SET rpm_limit = $3, tpm_limit = $4 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(project_id)
        .bind(crate::keys::limit_to_db(limits.rpm))
        .bind(crate::keys::limit_to_db(limits.tpm))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("project"));
        }
        self.get_project(org_id, project_id).await
    }

    /// Renames the organisation's project; returns it as it now is. An
    /// archived project is an [`StoreError::InvalidRequest`].
    pub async fn rename_project(
        &self,
        org_id: &str,
        project_id: &str,
        name: &str,
    ) -> Result<Project> {
        let project = self.get_project(org_id, project_id).await?;
        if project.archived_at.is_some() {
            return Err(StoreError::InvalidRequest(
                "an archived project cannot be modified".into(),
            ));
        }
        sqlx::query("UPDATE projects SET name = $3 WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(project_id)
            .bind(name)
            .execute(self.pool())
            .await?;
        self.get_project(org_id, project_id).await
    }

    /// Archives the organisation's project (once: archiving it again keeps
    /// the first time); returns it as it now is. Its keys stop working at
    /// once ([`Store::authenticate_key`] reads the project).
    pub async fn archive_project(&self, org_id: &str, project_id: &str) -> Result<Project> {
        let done = sqlx::query(
            "UPDATE projects SET archived_at = COALESCE(archived_at, $3) \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(project_id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("project"));
        }
        self.get_project(org_id, project_id).await
    }

    /// The organisation's oldest project called exactly `name`, if any.
    pub async fn find_project_by_name(&self, org_id: &str, name: &str) -> Result<Option<Project>> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 AND name = $2 \
             ORDER BY created_at, id LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }
}
