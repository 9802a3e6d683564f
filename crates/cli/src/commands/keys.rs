//! `luodi keys create|list|revoke`: API keys with roles, kept in the interaction store as
//! argon2 hashes. A running server picks changes up within 5 seconds.

use super::feedback::store_url;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use luodi_store::{Role, Store};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once: only its hash is stored).
    Create(CreateArgs),
    /// List keys (ids, names, roles; never the keys).
    List(StoreArgs),
    /// Revoke a key by id.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct StoreArgs {
    /// The store [default: [store] url of luodi.toml, else sqlite://$LUODI_HOME/luodi.db].
    #[arg(long, env = "LUODI_STORE_URL", hide_env_values = true)]
    store_url: Option<String>,
    #[arg(long, default_value = "luodi_")]
    table_prefix: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Who or what the key is for.
    #[arg(long)]
    name: String,
    /// client (inference), reviewer (+ console, feedback) or admin (+ cache, keys, export).
    #[arg(long, value_parser = ["client", "reviewer", "admin"])]
    role: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RevokeArgs {
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

async fn open(args: &StoreArgs, create: bool) -> Result<Store> {
    let url = match (&args.store_url, create) {
        // Creating the first key may come before the first `luodi serve`: make the file.
        (Some(url), true) => url.clone(),
        (None, true) => {
            format!("sqlite://{}", luodi_models::ModelStore::from_env().home().join("luodi.db").display())
        }
        _ => store_url(args.store_url.as_deref())?,
    };
    Store::open(&url, &args.table_prefix).await.context("opening the store")
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match cmd {
            KeysCommand::Create(a) => {
                let role: Role = a.role.parse().map_err(anyhow::Error::msg)?;
                let store = open(&a.store, true).await?;
                let (info, key) = store.create_key(&a.name, role).await?;
                eprintln!("created key {} ({}, {}); it is shown only now:", info.id, info.name, info.role.as_str());
                println!("{key}");
            }
            KeysCommand::List(a) => {
                let store = open(&a, false).await?;
                println!("{:<8}  {:<8}  {:<8}  NAME", "ID", "ROLE", "STATE");
                for k in store.list_keys().await? {
                    let state = if k.revoked_ms.is_some() { "revoked" } else { "active" };
                    println!("{:<8}  {:<8}  {:<8}  {}", k.id, k.role.as_str(), state, k.name);
                }
            }
            KeysCommand::Revoke(a) => {
                let store = open(&a.store, false).await?;
                if !store.revoke_key(&a.id).await? {
                    bail!("no active key with id `{}` (see `luodi keys list`)", a.id);
                }
                println!("revoked {}", a.id);
            }
        }
        Ok(())
    })
}
