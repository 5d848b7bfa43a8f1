//! `moor diff`: the plan of a folder or a git revision against the live cluster, object by
//! object, without changing anything. Exit 0 when nothing would change, 1 when something
//! would, 2 on error — as diff(1) and `kubectl diff`. Also holds what `moor apply` shares
//! with it: which source, which cluster, which ManifestSource the objects belong to.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::api::manifest_source::{ManifestSource, ManifestSourceSpec};
use crate::gitops::controller::manifest_source_resource;
use crate::gitops::diff;
use crate::gitops::kinds::Catalog;
use crate::gitops::plan::PlanOptions;
use crate::gitops::source::Snapshot;
use crate::gitops::sync::{self, Reader, directory_spec, git_spec};

/// Where the manifests come from and which cluster to compare with.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A folder of manifests.
    #[arg(conflicts_with = "git")]
    pub dir: Option<PathBuf>,
    /// A git repository (URL or local path) instead of a folder.
    #[arg(long)]
    pub git: Option<String>,
    /// Branch, tag (`tags/v1`) or commit of --git; the remote's default branch when absent.
    #[arg(long = "ref", requires = "git", default_value = "")]
    pub reference: String,
    /// Sub-path of the repository holding the manifests.
    #[arg(long, requires = "git", default_value = "")]
    pub path: String,
    /// Kubeconfig of the cluster; defaults to $KUBECONFIG, then /var/lib/moor/kubeconfig.yaml,
    /// then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The ManifestSource the objects belong to (its label, field manager and pruning).
    /// Defaults to the ManifestSource reading the same folder or repository, else the
    /// folder's (or repository's) name.
    #[arg(long)]
    pub source: Option<String>,
}

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// Coloured on a terminal, plain otherwise.
    Text,
    /// One JSON document for scripts.
    Json,
}

/// `moor diff ...`
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

/// An opened source with everything needed to plan it.
pub struct Prepared {
    /// The cluster.
    pub client: Client,
    /// Kinds the cluster serves.
    pub catalog: Catalog,
    /// The files at the revision read.
    pub snapshot: Snapshot,
    /// Plan options (source name, pruning, namespace).
    pub options: PlanOptions,
    /// How the source is named in output, e.g. `./manifests`.
    pub origin: String,
}

impl SourceArgs {
    /// Connect, read the source and work out which ManifestSource it is.
    pub async fn prepare(&self) -> anyhow::Result<Prepared> {
        let client = connect(self.kubeconfig.clone()).await?;
        let catalog = Catalog::discover(&client)
            .await
            .context("asking the API server which kinds it serves")?;
        let (spec, origin, fallback_name) = self.spec()?;
        let existing = find_source(&client, &spec, self.source.as_deref()).await?;
        let (name, spec_options) = match existing {
            Some(found) => (
                found.metadata.name.clone().unwrap_or_default(),
                found.spec.clone(),
            ),
            None => (self.source.clone().unwrap_or(fallback_name), spec.clone()),
        };
        // A temporary mirror for git: a diff must not touch the server's own caches.
        let cache = tempfile::Builder::new()
            .prefix("moor-git-")
            .tempdir()
            .context("creating a temporary directory for the git mirror")?;
        let mut reader = Reader::open(&spec, cache.path().join("mirror"))?;
        let snapshot = reader.read().await.context("reading the source")?;
        drop(reader);
        let options = PlanOptions {
            source: name,
            revision: snapshot.revision.clone(),
            default_namespace: spec_options.default_namespace().to_owned(),
            prune: spec_options.prune(),
            allow_empty: spec_options.allow_empty.unwrap_or(false),
        };
        Ok(Prepared {
            client,
            catalog,
            snapshot,
            options,
            origin,
        })
    }

    /// The source as a ManifestSource spec, how to name it in output, and the source name
    /// to use when no ManifestSource reads it.
    fn spec(&self) -> anyhow::Result<(ManifestSourceSpec, String, String)> {
        if let Some(url) = &self.git {
            let origin = crate::gitops::source::git::redact_url(url);
            let spec = git_spec(url, &self.reference, &self.path);
            return Ok((spec, origin.clone(), git_source_name(&origin)));
        }
        let Some(dir) = &self.dir else {
            anyhow::bail!("name a folder of manifests, or a repository with --git URL");
        };
        let spec =
            directory_spec(dir).with_context(|| format!("folder {} not found", dir.display()))?;
        let name = spec
            .directory
            .as_ref()
            .and_then(|d| Path::new(&d.path).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "manifests".into());
        Ok((spec, dir.display().to_string(), source_name(&name)))
    }
}

/// The source name for a repository: its last path segment, taken from the *redacted* URL
/// (`https://tok@host` has no path, and the name ends up in labels and field managers).
fn git_source_name(redacted_url: &str) -> String {
    let name = redacted_url
        .trim_end_matches('/')
        .rsplit(['/', ':', '@'])
        .next()
        .unwrap_or("git")
        .trim_end_matches(".git");
    source_name(name)
}

/// A folder or repository name made into a valid object name.
fn source_name(raw: &str) -> String {
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "manifests".to_owned()
    } else {
        trimmed.chars().take(63).collect()
    }
}

/// The ManifestSource named `name`, or else the one reading the same folder or repository.
async fn find_source(
    client: &Client,
    spec: &ManifestSourceSpec,
    name: Option<&str>,
) -> anyhow::Result<Option<ManifestSource>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &manifest_source_resource());
    let list = api
        .list(&Default::default())
        .await
        .context("listing ManifestSources")?;
    let sources = list.items.into_iter().filter_map(|obj| {
        serde_json::to_value(obj)
            .ok()
            .and_then(|v| serde_json::from_value::<ManifestSource>(v).ok())
    });
    for source in sources {
        let matches = match name {
            Some(name) => source.metadata.name.as_deref() == Some(name),
            None => match (
                &spec.directory,
                &spec.git,
                &source.spec.directory,
                &source.spec.git,
            ) {
                (Some(a), _, Some(b), _) => a.path == b.path,
                (_, Some(a), _, Some(b)) => {
                    a.url == b.url
                        && a.path.as_deref().unwrap_or("") == b.path.as_deref().unwrap_or("")
                }
                _ => false,
            },
        };
        if matches {
            return Ok(Some(source));
        }
    }
    Ok(None)
}

/// A client for the cluster a kubeconfig names.
pub async fn connect(kubeconfig: Option<PathBuf>) -> anyhow::Result<Client> {
    let path = kubeconfig.or_else(|| {
        let server = PathBuf::from(crate::cli::DEFAULT_DATA_DIR).join("kubeconfig.yaml");
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
        [Some(server), home]
            .into_iter()
            .flatten()
            .find(|p| p.exists())
    });
    let Some(path) = path else {
        anyhow::bail!(
            "no kubeconfig: pass --kubeconfig FILE (moor server writes one to its data dir)"
        );
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", path.display()))?;
    Client::try_from(config).context("creating the API client")
}

/// Whether to colour stdout: a terminal, and NO_COLOR unset.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Run `moor diff`.
pub async fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let prepared = match args.source.prepare().await {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let outcome = sync::sync(
        &prepared.client,
        &prepared.catalog,
        &prepared.snapshot,
        &prepared.options,
        false,
        &|_, _| {},
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: talking to the API server: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let plan = &outcome.plan;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diff::to_json(plan)).unwrap_or_default()
        ),
        Output::Text => print!("{}", diff::render(plan, &prepared.origin, color())),
    }
    Ok(if !plan.errors.is_empty() {
        ExitCode::from(2)
    } else if plan.has_changes() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_are_valid_object_names() {
        assert_eq!(source_name("manifests"), "manifests");
        assert_eq!(source_name("My_Apps.v2"), "my-apps-v2");
        assert_eq!(source_name("..."), "manifests");
    }

    #[test]
    fn a_repository_source_name_never_holds_its_credentials() {
        use crate::gitops::source::git::redact_url;
        for (url, name) in [
            ("https://host/org/apps.git", "apps"),
            ("git@host:org/apps.git", "apps"),
            ("https://user:secret-token@host", "host"),
            ("https://secret-token@host/", "host"),
            ("ssh://git:secret-token@host/org/apps", "apps"),
        ] {
            let got = git_source_name(&redact_url(url));
            assert_eq!(got, name, "{url}");
            assert!(!got.contains("secret"), "{url}: {got}");
        }
    }
}
