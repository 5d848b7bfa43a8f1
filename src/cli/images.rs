//! `moor images`: the node agent's images in containerd (namespace `moor`) by hand —
//! import archives (what `moor agent` does for its images folder at start), pull, list.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::kubelet::containerd::{Containerd, DEFAULT_SOCKET};
use crate::kubelet::images::{ImageStore, RegistryAuth};

/// `moor images ...`
#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import image archives (OCI layout or `docker save` tars, plain or gzip) and unpack
    /// them; prints one line per image.
    Import {
        /// Archive files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        containerd: ContainerdArgs,
    },
    /// Pull an image from its registry and unpack it.
    Pull {
        /// Image reference, e.g. `busybox` or `registry.example:5000/app:v1`.
        image: String,
        /// Registry user name (with --password) for basic or token auth.
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Registry password.
        #[arg(long, env = "MOOR_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Registries (host:port) to reach over plain HTTP (loopback ones always are).
        #[arg(long = "insecure-registry", value_delimiter = ',')]
        insecure_registries: Vec<String>,
        #[command(flatten)]
        containerd: ContainerdArgs,
    },
    /// List images: name, digest, size.
    Ls {
        #[command(flatten)]
        containerd: ContainerdArgs,
    },
}

#[derive(Debug, Args)]
pub struct ContainerdArgs {
    /// containerd's socket.
    #[arg(long, env = "MOOR_CONTAINERD_SOCKET", default_value = DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
}

impl ContainerdArgs {
    async fn store(&self) -> anyhow::Result<ImageStore> {
        let containerd = Containerd::connect(&self.containerd_socket)
            .await
            .context("connecting to containerd")?;
        Ok(ImageStore::new(containerd))
    }
}

/// Run `moor images ...`.
pub async fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImagesCommand::Import { files, containerd } => {
            let store = containerd.store().await?;
            let mut failed = false;
            for file in &files {
                match store.import_archive(file).await {
                    Ok(names) => {
                        for name in names {
                            let digest = match store.get(&name).await {
                                Ok(Some(info)) => info.digest,
                                _ => String::new(),
                            };
                            println!("imported {name}  {digest}");
                        }
                    }
                    Err(err) => {
                        // Keep going: one bad archive should not hide the others' results.
                        eprintln!("error: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ImagesCommand::Pull {
            image,
            username,
            password,
            insecure_registries,
            containerd,
        } => {
            let store = containerd
                .store()
                .await?
                .with_insecure_registries(insecure_registries);
            let auth = match (username, password) {
                (Some(username), Some(password)) => RegistryAuth::Basic { username, password },
                _ => RegistryAuth::Anonymous,
            };
            let info = store
                .pull(&image, &auth)
                .await
                .with_context(|| format!("pulling {image}"))?;
            println!(
                "pulled {}  {}  {}",
                info.name,
                info.digest,
                human_size(info.size)
            );
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Ls { containerd } => {
            let store = containerd.store().await?;
            let images = store.list().await.context("listing images")?;
            let width = images
                .iter()
                .map(|i| i.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!("{:<width$}  {:<71}  SIZE", "NAME", "DIGEST");
            for image in images {
                println!(
                    "{:<width$}  {:<71}  {}",
                    image.name,
                    image.digest,
                    human_size(image.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ctr() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
