//! Rendering a [`Plan`] for people (`moor diff`, `moor apply`) and for scripts (`-o json`):
//! per object a marker (`+` create, `~` update, `±` replace, `-` prune), a unified YAML diff
//! of the live object against what the server would store (server-managed fields left
//! out, Secret values already masked by the plan), and a summary line.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::{Value, json};
use similar::{ChangeTag, TextDiff};

use super::plan::{Action, Counts, Entry, Plan};

const HEADER: Style = Style::new().bold();
const ADDED: Style = AnsiColor::Green.on_default();
const REMOVED: Style = AnsiColor::Red.on_default();
const CHANGED: Style = AnsiColor::Yellow.on_default();
const CONTEXT_LINES: usize = 3;

fn yaml(value: &Option<Value>) -> String {
    match value {
        Some(value) => serde_yaml::to_string(value).unwrap_or_else(|e| format!("# {e}\n")),
        None => String::new(),
    }
}

/// The unified diff of one entry's YAML, lines prefixed `-`, `+` or ` ` and indented;
/// groups of changes separated by `...`. Empty when nothing differs.
pub fn unified(entry: &Entry, color: bool) -> String {
    let before = yaml(&entry.live);
    let after = yaml(&entry.planned);
    let diff = TextDiff::from_lines(before.as_str(), after.as_str());
    let mut out = String::new();
    let paint = |style: Style, text: &str| {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    };
    for (i, group) in diff.grouped_ops(CONTEXT_LINES).iter().enumerate() {
        if i > 0 {
            out.push_str("    ...\n");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let line = change.value().trim_end_matches('\n');
                let rendered = match change.tag() {
                    ChangeTag::Delete => paint(REMOVED, &format!("-   {line}")),
                    ChangeTag::Insert => paint(ADDED, &format!("+   {line}")),
                    ChangeTag::Equal => format!("    {line}"),
                };
                out.push_str(&rendered);
                out.push('\n');
            }
        }
    }
    out
}

/// `Plan: 1 to create, 2 to update, 1 to prune, 12 unchanged.`
pub fn summary(counts: &Counts) -> String {
    let mut parts = vec![
        format!("{} to create", counts.create),
        format!("{} to update", counts.update),
    ];
    if counts.replace > 0 {
        parts.push(format!("{} to replace", counts.replace));
    }
    parts.push(format!("{} to prune", counts.prune));
    parts.push(format!("{} unchanged", counts.unchanged));
    format!("Plan: {}.", parts.join(", "))
}

/// The human rendering of a plan: changed objects with their diffs, then errors, then the
/// summary. `origin` names the source in prune lines (e.g. `./manifests`).
pub fn render(plan: &Plan, origin: &str, color: bool) -> String {
    let mut out = String::new();
    let paint = |style: Style, text: String| {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text
        }
    };
    for entry in &plan.entries {
        let (marker, style, note) = match entry.action {
            Action::Unchanged => continue,
            Action::Create => ("+", ADDED, String::new()),
            Action::Update => ("~", CHANGED, String::new()),
            Action::Replace => (
                "±",
                CHANGED,
                "  (replace: an immutable field changes; deleted and re-created)".to_owned(),
            ),
            Action::Prune => ("-", REMOVED, format!("  (prune: no longer in {origin})")),
        };
        let header = paint(style.bold(), format!("{marker} {}", entry.id));
        let _ = writeln!(out, "{header}{note}");
        if entry.action != Action::Prune {
            out.push_str(&unified(entry, color));
        }
    }
    for error in &plan.errors {
        let _ = writeln!(out, "{}", paint(REMOVED, format!("error: {error}")));
    }
    let _ = writeln!(out, "{}", paint(HEADER, summary(&plan.counts())));
    out
}

/// The machine rendering: every entry (unchanged ones too) with its action, place and
/// diff, the errors and the counts.
pub fn to_json(plan: &Plan) -> Value {
    let entries: Vec<Value> = plan
        .entries
        .iter()
        .map(|entry| {
            json!({
                "action": entry.action,
                "apiVersion": entry.id.api_version,
                "kind": entry.id.kind,
                "namespace": entry.id.namespace,
                "name": entry.id.name,
                "file": entry.file,
                "line": entry.line,
                "diff": unified(entry, false),
            })
        })
        .collect();
    json!({
        "source": plan.source,
        "revision": plan.revision,
        "changes": entries,
        "errors": plan.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "summary": plan.counts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::kinds::{Catalog, ObjectId};

    fn entry(action: Action, live: Option<Value>, planned: Option<Value>) -> Entry {
        let kind = Catalog::from_registry()
            .get("apps/v1", "Deployment")
            .cloned()
            .unwrap();
        Entry {
            id: ObjectId {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "default".into(),
                name: "web".into(),
            },
            action,
            kind,
            file: "web.yaml".into(),
            line: 1,
            live,
            planned,
            apply: None,
            live_fingerprint: None,
        }
    }

    #[test]
    fn an_update_shows_only_the_changed_lines_with_context() {
        let live = json!({"spec": {"replicas": 3, "paused": false}});
        let planned = json!({"spec": {"replicas": 5, "paused": false}});
        let text = unified(&entry(Action::Update, Some(live), Some(planned)), false);
        assert_eq!(
            text,
            "    spec:\n-     replicas: 3\n+     replicas: 5\n      paused: false\n"
        );
    }

    #[test]
    fn unchanged_objects_render_nothing_and_the_summary_counts_them() {
        let same = json!({"spec": {"replicas": 3}});
        let plan = Plan {
            source: "s".into(),
            revision: "r".into(),
            entries: vec![
                entry(Action::Unchanged, Some(same.clone()), Some(same)),
                entry(Action::Prune, Some(json!({})), None),
            ],
            errors: vec![],
        };
        let text = render(&plan, "./manifests", false);
        assert_eq!(
            text,
            "- apps/v1 Deployment default/web  (prune: no longer in ./manifests)\n\
             Plan: 0 to create, 0 to update, 1 to prune, 1 unchanged.\n"
        );
        let json = to_json(&plan);
        assert_eq!(json["summary"]["prune"], 1);
        assert_eq!(json["changes"][0]["action"], "unchanged");
        assert_eq!(json["changes"][0]["diff"], "");
    }

    #[test]
    fn color_is_only_used_when_asked() {
        let e = entry(Action::Create, None, Some(json!({"a": 1})));
        assert!(!unified(&e, false).contains('\u{1b}'));
        assert!(unified(&e, true).contains('\u{1b}'));
    }
}
