//! `bento tenants add|ls` and `bento keys create|ls|revoke`: over the API
//! with an admin key, or offline against a data dir (`--data-dir`) while
//! no controller runs on it. docs/tenants.md.

use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

use super::args::{JsonFlag, ServerArgs};
use super::{out, say};
use crate::controller::tenancy::keys::KeyStore;
use crate::controller::tenancy::Role;
use crate::wire::api::{KeyInfo, KeyRole, NewKey, TenantInfo};

/// Where the tenants are: a controller, or a data dir.
#[derive(Debug, Clone, Args)]
pub struct Where {
    /// Work on this data dir directly instead of through a controller
    /// (refused while a controller runs on it).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add a tenant: its own functions, sessions, history and quotas.
    Add {
        /// 1-32 of a-z, 0-9, '-' and '_'.
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// List tenants.
    Ls {
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Lists and watches only.
    Viewer,
    /// Everything within the tenant.
    User,
    /// A user that also manages keys.
    Admin,
}

impl From<RoleArg> for KeyRole {
    fn from(r: RoleArg) -> KeyRole {
        match r {
            RoleArg::Viewer => KeyRole::Viewer,
            RoleArg::User => KeyRole::User,
            RoleArg::Admin => KeyRole::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an API key for a tenant; it is printed once, only its hash is kept.
    Create {
        /// The tenant it opens.
        #[arg(long)]
        tenant: String,
        /// What it may do.
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        at: Where,
    },
    /// List keys (ids, tenants, roles; never the keys).
    Ls {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        at: Where,
    },
    /// Revoke keys by id: refused from their next request, and their open
    /// attaches are closed now.
    Revoke {
        /// Key ids (k-…), as `bento keys ls` shows them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        at: Where,
    },
}

/// The data dir's store, if no controller holds the directory.
fn offline(dir: &Path) -> anyhow::Result<(KeyStore, crate::controller::identity::DataDirLock)> {
    if !dir.is_dir() {
        anyhow::bail!("--data-dir {}: no such directory", dir.display());
    }
    let lock = crate::controller::identity::lock(dir).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; with a controller running, use the API (an admin key, without --data-dir)"
        )
    })?;
    Ok((KeyStore::open(dir)?, lock))
}

fn print_tenants(list: &[TenantInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return out(&serde_json::to_string_pretty(list)?);
    }
    let mut t = String::from("TENANT                            CREATED\n");
    for x in list {
        t.push_str(&format!(
            "{:<33} {}\n",
            x.name,
            super::time::ago(x.created_at)
        ));
    }
    out(t.trim_end())
}

fn role_word(r: KeyRole) -> &'static str {
    Role::from_wire(r).as_str()
}

fn print_keys(list: &[KeyInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return out(&serde_json::to_string_pretty(list)?);
    }
    if list.is_empty() {
        say("no keys (bento keys create --tenant NAME makes one)");
        return Ok(());
    }
    let mut t = String::from(
        "KEY              TENANT                            ROLE     CREATED       REVOKED\n",
    );
    for k in list {
        t.push_str(&format!(
            "{:<16} {:<33} {:<8} {:<13} {}\n",
            k.id,
            k.tenant,
            role_word(k.role),
            super::time::ago(k.created_at),
            k.revoked_at.map_or_else(|| "-".into(), super::time::ago)
        ));
    }
    out(t.trim_end())
}

fn print_new_key(k: &NewKey, json: bool) -> anyhow::Result<()> {
    if json {
        return out(&serde_json::to_string_pretty(k)?);
    }
    say(&format!(
        "key {} for tenant {} ({}); it is shown this once, keep it now:",
        k.info.id,
        k.info.tenant,
        role_word(k.info.role)
    ));
    out(&k.key)
}

pub(super) async fn tenants(cmd: TenantsCommand) -> anyhow::Result<i32> {
    match cmd {
        TenantsCommand::Add { name, at } => {
            let info = match &at.data_dir {
                Some(dir) => offline(dir)?.0.add_tenant(&name)?,
                None => at.server.client()?.add_tenant(&name).await?,
            };
            say(&format!(
                "tenant {} added (bento keys create --tenant {} makes its keys)",
                info.name, info.name
            ));
            Ok(0)
        }
        TenantsCommand::Ls { json, at } => {
            let list = match &at.data_dir {
                Some(dir) => offline(dir)?.0.tenants(),
                None => at.server.client()?.tenants().await?,
            };
            print_tenants(&list, json.json)?;
            Ok(0)
        }
    }
}

pub(super) async fn keys(cmd: KeysCommand) -> anyhow::Result<i32> {
    match cmd {
        KeysCommand::Create {
            tenant,
            role,
            json,
            at,
        } => {
            let made = match &at.data_dir {
                Some(dir) => offline(dir)?
                    .0
                    .create_key(&tenant, Role::from_wire(role.into()))?,
                None => at.server.client()?.create_key(&tenant, role.into()).await?,
            };
            print_new_key(&made, json.json)?;
            Ok(0)
        }
        KeysCommand::Ls { tenant, json, at } => {
            let list = match &at.data_dir {
                Some(dir) => offline(dir)?.0.keys(tenant.as_deref()),
                None => at.server.client()?.keys(tenant.as_deref()).await?,
            };
            print_keys(&list, json.json)?;
            Ok(0)
        }
        KeysCommand::Revoke { ids, at } => {
            let store = at.data_dir.as_deref().map(offline).transpose()?;
            for id in &ids {
                let info = match &store {
                    Some((s, _)) => s.revoke(id)?,
                    None => at.server.client()?.revoke_key(id).await?,
                };
                say(&format!(
                    "key {} of tenant {} revoked",
                    info.id, info.tenant
                ));
            }
            Ok(0)
        }
    }
}
