//! `moor token create|list|delete`: bootstrap tokens, with which `moor agent --token`
//! joins a cluster (kubeadm's `token` commands, for moor's join).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::auth::authn::{
    BOOTSTRAP_NAMESPACE, BOOTSTRAP_SECRET_PREFIX, BOOTSTRAP_SECRET_TYPE, new_bootstrap_token,
};

/// `moor token ...`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Kubeconfig of the cluster (moor server writes one to its data dir).
    #[arg(long, env = "KUBECONFIG", global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print it (and the command that joins with it).
    Create {
        /// How long the token is valid, e.g. 30m, 24h; 0 never expires.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// What the token is for (kept in its Secret).
        #[arg(long, default_value = "created by moor token create")]
        description: String,
    },
    /// List bootstrap tokens (their ids and expiry; never their secrets).
    List,
    /// Delete a bootstrap token by its id (the part before the dot) or whole.
    Delete {
        /// The token or its id.
        token: String,
    },
}

/// Run `moor token`.
pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let client = super::diff::connect(args.kubeconfig).await?;
    let api: Api<Secret> = Api::namespaced(client, BOOTSTRAP_NAMESPACE);
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let ttl = parse_ttl(&ttl)?;
            let expires = ttl.map(|ttl| jiff::Timestamp::now() + ttl);
            let (token, secret) =
                new_bootstrap_token(expires, &description).context("drawing a random token")?;
            let secret: Secret = serde_json::from_value(secret)?;
            api.create(&PostParams::default(), &secret)
                .await
                .context("creating the bootstrap token's Secret")?;
            println!("{token}");
        }
        TokenCommand::List => {
            println!("{:<8} {:<22} DESCRIPTION", "TOKEN ID", "EXPIRES");
            for secret in api.list(&ListParams::default()).await?.items {
                if secret.type_.as_deref() != Some(BOOTSTRAP_SECRET_TYPE) {
                    continue;
                }
                let data = secret.data.unwrap_or_default();
                let text = |k: &str| {
                    data.get(k)
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                        .unwrap_or_default()
                };
                let expires = text("expiration");
                println!(
                    "{:<8} {:<22} {}",
                    text("token-id"),
                    if expires.is_empty() {
                        "<never>".to_owned()
                    } else {
                        expires
                    },
                    text("description")
                );
            }
        }
        TokenCommand::Delete { token } => {
            let id = token.split('.').next().unwrap_or_default();
            api.delete(
                &format!("{BOOTSTRAP_SECRET_PREFIX}{id}"),
                &DeleteParams::default(),
            )
            .await
            .with_context(|| format!("deleting bootstrap token {id}"))?;
            println!("bootstrap token {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A TTL like `90s`, `30m`, `24h`, `7d`; `0` for none.
fn parse_ttl(text: &str) -> anyhow::Result<Option<jiff::SignedDuration>> {
    if text == "0" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .with_context(|| format!("--ttl {text:?}: expected a number and a unit (s, m, h, d)"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86400,
        _ => anyhow::bail!("--ttl {text:?}: the unit must be s, m, h or d"),
    };
    Ok(Some(jiff::SignedDuration::from_secs(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("0").unwrap(), None);
        assert_eq!(
            parse_ttl("90s").unwrap(),
            Some(jiff::SignedDuration::from_secs(90))
        );
        assert_eq!(
            parse_ttl("2h").unwrap(),
            Some(jiff::SignedDuration::from_secs(7200))
        );
        assert!(parse_ttl("2w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
