//! Application Git provenance (wire contract 12.1): which commit of the
//! application produced an event or span.
//!
//! Sources, first match wins: explicit values ([`AppGit`] in the options,
//! then `RAINDROP_COMMIT_SHA` / `RAINDROP_COMMIT_DIRTY` / `RAINDROP_BRANCH`;
//! an explicit SHA ends the search), then marked deployment metadata
//! (Vercel, Railway, Heroku), then a local `git` lookup in the working
//! directory (at most 750 ms, on a thread of its own), then marked CI
//! metadata (GitHub Actions, GitLab, Buildkite, CircleCI). Explicit fields
//! always override detected ones. Everything but the local lookup is read
//! in `Client::new`; the lookup never runs on a caller's path.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::span::AttributeValue;

/// Property and span attribute of the commit.
pub const COMMIT_SHA_KEY: &str = "raindrop.app.commit_sha";
/// Property and span attribute saying the checkout had local changes.
pub const COMMIT_DIRTY_KEY: &str = "raindrop.app.commit_dirty";
/// Property and span attribute of the branch.
pub const BRANCH_KEY: &str = "raindrop.app.branch";

/// How long the local `git` lookup may take, all commands together (the
/// Python SDK's budget).
pub(crate) const LOOKUP_BUDGET: Duration = Duration::from_millis(750);

/// Longest commit value kept (a SHA-256 id is 64 hex digits).
const MAX_SHA_CHARS: usize = 128;
/// Longest branch name kept.
const MAX_BRANCH_CHARS: usize = 256;

/// Application Git provenance settings: on by default, as in the Python SDK.
///
/// `ClientOptions::app_git(false)` (or `RAINDROP_APP_GIT=false` with
/// `ClientOptions::from_env`) turns it off; explicit values win over every
/// detected one.
///
/// ```
/// use raindrop_core::{AppGit, ClientOptions};
/// let off = ClientOptions::default().app_git(false);
/// assert!(!off.app_git.enabled);
/// let pinned = ClientOptions::default().app_git(AppGit::new().commit_sha("4f2a9c1").branch("main"));
/// assert_eq!(pinned.app_git.commit_sha.as_deref(), Some("4f2a9c1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppGit {
    /// Add provenance at all (default on).
    pub enabled: bool,
    /// The commit, as given (not checked: an explicit value may be a tag or
    /// build id). Overrides `RAINDROP_COMMIT_SHA` and stops detection.
    pub commit_sha: Option<String>,
    /// Whether the build had local changes. Overrides `RAINDROP_COMMIT_DIRTY`.
    pub commit_dirty: Option<bool>,
    /// The branch. Overrides `RAINDROP_BRANCH`.
    pub branch: Option<String>,
    /// Detect the commit from deployment/CI variables and local `git` when
    /// no explicit commit is given (default: `RAINDROP_GIT_AUTO_DETECT`,
    /// else on).
    pub auto_detect: Option<bool>,
    /// Also detect the branch (default: `RAINDROP_GIT_DETECT_BRANCH=true`,
    /// else off, as in the Python SDK: a branch name can say more than a
    /// commit does).
    pub detect_branch: Option<bool>,
}

impl Default for AppGit {
    fn default() -> Self {
        AppGit {
            enabled: true,
            commit_sha: None,
            commit_dirty: None,
            branch: None,
            auto_detect: None,
            detect_branch: None,
        }
    }
}

impl From<bool> for AppGit {
    /// `true`: the default (on, detected); `false`: off.
    fn from(on: bool) -> Self {
        AppGit {
            enabled: on,
            ..AppGit::default()
        }
    }
}

impl AppGit {
    /// On, with detection (the default).
    pub fn new() -> Self {
        AppGit::default()
    }
    /// Off: no provenance is added.
    pub fn off() -> Self {
        AppGit::from(false)
    }
    /// Sets the commit explicitly (detection is then skipped).
    pub fn commit_sha(mut self, sha: impl Into<String>) -> Self {
        self.commit_sha = Some(sha.into());
        self
    }
    /// Says whether the build had local changes.
    pub fn commit_dirty(mut self, dirty: bool) -> Self {
        self.commit_dirty = Some(dirty);
        self
    }
    /// Sets the branch explicitly.
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }
    /// Turns detection (deployment, local `git`, CI) on or off.
    pub fn auto_detect(mut self, on: bool) -> Self {
        self.auto_detect = Some(on);
        self
    }
    /// Turns branch detection on or off.
    pub fn detect_branch(mut self, on: bool) -> Self {
        self.detect_branch = Some(on);
        self
    }
}

/// The provenance in force: what is added to events, interaction updates
/// and spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppGitInfo {
    /// `raindrop.app.commit_sha`
    pub commit_sha: Option<String>,
    /// `raindrop.app.commit_dirty`
    pub commit_dirty: Option<bool>,
    /// `raindrop.app.branch`
    pub branch: Option<String>,
}

impl AppGitInfo {
    fn is_empty(&self) -> bool {
        self.commit_sha.is_none() && self.commit_dirty.is_none() && self.branch.is_none()
    }

    /// `self` with every field `over` has replaced.
    fn overlaid(mut self, over: &AppGitInfo) -> AppGitInfo {
        if over.commit_sha.is_some() {
            self.commit_sha.clone_from(&over.commit_sha);
        }
        if over.commit_dirty.is_some() {
            self.commit_dirty = over.commit_dirty;
        }
        if over.branch.is_some() {
            self.branch.clone_from(&over.branch);
        }
        self
    }

    /// Adds the fields to event properties, unless the caller set them.
    pub(crate) fn add_to_properties(&self, props: &mut crate::Properties) {
        let mut add = |k: &str, v: Value| {
            props.entry(k.to_owned()).or_insert(v);
        };
        if let Some(s) = &self.commit_sha {
            add(COMMIT_SHA_KEY, Value::String(s.clone()));
        }
        if let Some(d) = self.commit_dirty {
            add(COMMIT_DIRTY_KEY, Value::Bool(d));
        }
        if let Some(b) = &self.branch {
            add(BRANCH_KEY, Value::String(b.clone()));
        }
    }

    /// Adds the fields as raw span attributes, unless the span has them.
    pub(crate) fn add_to_span(&self, span: &mut crate::SpanRecord) {
        let mut add = |k: &'static str, v: AttributeValue| {
            if !span.attributes.iter().any(|(key, _)| key == k) {
                span.attributes.push((k.into(), v));
            }
        };
        if let Some(s) = &self.commit_sha {
            add(COMMIT_SHA_KEY, AttributeValue::String(s.clone()));
        }
        if let Some(d) = self.commit_dirty {
            add(COMMIT_DIRTY_KEY, AttributeValue::Bool(d));
        }
        if let Some(b) = &self.branch {
            add(BRANCH_KEY, AttributeValue::String(b.clone()));
        }
    }
}

/// The provenance of one client: known at once, or once the local lookup
/// ends. Items the worker prepares before then are sent without it (a
/// tracking call never waits for `git`).
pub(crate) struct AppGitState {
    resolved: OnceLock<Option<AppGitInfo>>,
}

impl AppGitState {
    /// Resolved to nothing (provenance off, or a disabled client).
    pub(crate) fn none() -> Arc<AppGitState> {
        let s = AppGitState {
            resolved: OnceLock::new(),
        };
        let _ = s.resolved.set(None);
        Arc::new(s)
    }

    /// The provenance, when known.
    pub(crate) fn get(&self) -> Option<&AppGitInfo> {
        self.resolved.get().and_then(Option::as_ref)
    }

    /// Whether the local lookup is still running.
    pub(crate) fn pending(&self) -> bool {
        self.resolved.get().is_none()
    }

    fn set(&self, info: AppGitInfo) {
        let _ = self.resolved.set(Some(info).filter(|i| !i.is_empty()));
    }

    /// Reads the explicit values and the environment now; starts the local
    /// lookup on a thread of its own when it is needed.
    pub(crate) fn start(config: &AppGit) -> Arc<AppGitState> {
        if !config.enabled {
            return AppGitState::none();
        }
        let state = Arc::new(AppGitState {
            resolved: OnceLock::new(),
        });
        match plan(config, &|k| std::env::var(k).ok()) {
            Plan::Done(info) => state.set(info),
            Plan::Lookup {
                explicit,
                fallback,
                detect_branch,
            } => {
                let s = state.clone();
                let known = explicit.clone();
                let spawned = std::thread::Builder::new()
                    .name("raindrop-app-git".into())
                    .spawn(move || {
                        let started = Instant::now();
                        let found = local_git(detect_branch, started + LOOKUP_BUDGET);
                        if found.is_none() {
                            tracing::debug!(target: "raindrop", elapsed_ms = started.elapsed().as_millis() as u64, "no local git commit found (or the lookup gave up at its bound)");
                        }
                        let base = found.or(fallback).unwrap_or_default();
                        s.set(base.overlaid(&explicit));
                    });
                if spawned.is_err() {
                    // No thread, no lookup: what is known already.
                    state.set(known);
                }
            }
        }
        state
    }
}

/// What `Client::new` can decide at once.
#[derive(Debug, PartialEq)]
pub(crate) enum Plan {
    Done(AppGitInfo),
    Lookup {
        explicit: AppGitInfo,
        fallback: Option<AppGitInfo>,
        detect_branch: bool,
    },
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn marked(v: Option<String>) -> bool {
    v.is_some_and(|v| !v.trim().is_empty() && parse_bool(&v) != Some(false))
}

/// A 40- or 64-digit hex commit id: all an automatic source may report.
fn valid_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Keeps at most `max` characters and drops control characters: values
/// from the environment or `git` are data, never trusted to be tidy.
fn clean(s: &str, max: usize) -> Option<String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    Some(t).filter(|t| !t.is_empty())
}

/// Decides from the options and the environment (`env`) what is known now
/// and whether the local lookup must run.
pub(crate) fn plan(config: &AppGit, env: &dyn Fn(&str) -> Option<String>) -> Plan {
    let mut explicit = AppGitInfo {
        commit_sha: env("RAINDROP_COMMIT_SHA").and_then(|v| clean(&v, MAX_SHA_CHARS)),
        commit_dirty: env("RAINDROP_COMMIT_DIRTY").and_then(|v| parse_bool(&v)),
        branch: env("RAINDROP_BRANCH").and_then(|v| clean(&v, MAX_BRANCH_CHARS)),
    };
    let from_options = AppGitInfo {
        commit_sha: config
            .commit_sha
            .as_deref()
            .and_then(|v| clean(v, MAX_SHA_CHARS)),
        commit_dirty: config.commit_dirty,
        branch: config
            .branch
            .as_deref()
            .and_then(|v| clean(v, MAX_BRANCH_CHARS)),
    };
    explicit = explicit.overlaid(&from_options);
    let auto = config
        .auto_detect
        .or_else(|| env("RAINDROP_GIT_AUTO_DETECT").and_then(|v| parse_bool(&v)))
        .unwrap_or(true);
    let detect_branch = config
        .detect_branch
        .or_else(|| env("RAINDROP_GIT_DETECT_BRANCH").and_then(|v| parse_bool(&v)))
        .unwrap_or(false);
    // An explicit commit names the build: nothing detected may join it.
    if explicit.commit_sha.is_some() || !auto {
        return Plan::Done(explicit);
    }
    let source = |sha_key: &str, branch_key: Option<&str>| -> Option<AppGitInfo> {
        let sha = env(sha_key)
            .map(|s| s.trim().to_owned())
            .filter(|s| valid_sha(s))?;
        let branch = branch_key
            .filter(|_| detect_branch)
            .and_then(&env)
            .and_then(|b| clean(&b, MAX_BRANCH_CHARS));
        Some(AppGitInfo {
            commit_sha: Some(sha),
            commit_dirty: None,
            branch,
        })
    };
    const DEPLOYMENTS: [(&str, &str, Option<&str>); 3] = [
        (
            "VERCEL",
            "VERCEL_GIT_COMMIT_SHA",
            Some("VERCEL_GIT_COMMIT_REF"),
        ),
        (
            "RAILWAY_ENVIRONMENT",
            "RAILWAY_GIT_COMMIT_SHA",
            Some("RAILWAY_GIT_BRANCH"),
        ),
        ("DYNO", "HEROKU_SLUG_COMMIT", None),
    ];
    for (marker, sha, branch) in DEPLOYMENTS {
        if marked(env(marker)) {
            if let Some(found) = source(sha, branch) {
                return Plan::Done(found.overlaid(&explicit));
            }
        }
    }
    const CI: [(&str, &str, &str); 4] = [
        ("GITHUB_ACTIONS", "GITHUB_SHA", "GITHUB_REF_NAME"),
        ("GITLAB_CI", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME"),
        ("BUILDKITE", "BUILDKITE_COMMIT", "BUILDKITE_BRANCH"),
        ("CIRCLECI", "CIRCLE_SHA1", "CIRCLE_BRANCH"),
    ];
    let fallback = CI
        .iter()
        .filter(|(marker, _, _)| marked(env(marker)))
        .find_map(|(_, sha, branch)| source(sha, Some(branch)));
    Plan::Lookup {
        explicit,
        fallback,
        detect_branch,
    }
}

/// The checkout of the working directory: `rev-parse`, then `status` and
/// (opt-in) `symbolic-ref`, all within `deadline`; `None` without a valid
/// commit.
fn local_git(detect_branch: bool, deadline: Instant) -> Option<AppGitInfo> {
    let head = git(&["rev-parse", "--verify", "HEAD"], deadline)?;
    if head.code != Some(0) {
        return None;
    }
    let sha = head.out.trim().to_owned();
    if !valid_sha(&sha) {
        return None;
    }
    let mut info = AppGitInfo {
        commit_sha: Some(sha),
        ..AppGitInfo::default()
    };
    if let Some(st) = git(
        &["status", "--porcelain=v1", "--untracked-files=normal"],
        deadline,
    ) {
        // Any output means changes, even if reading stopped at the cap.
        if !st.out.is_empty() {
            info.commit_dirty = Some(true);
        } else if st.code == Some(0) {
            info.commit_dirty = Some(false);
        }
    }
    if detect_branch {
        if let Some(b) = git(&["symbolic-ref", "--short", "HEAD"], deadline) {
            if b.code == Some(0) {
                info.branch = clean(&b.out, MAX_BRANCH_CHARS);
            }
        }
    }
    Some(info)
}

struct GitOutput {
    code: Option<i32>,
    out: String,
}

/// Most output read from one `git` command.
const MAX_OUTPUT: u64 = 4096;

/// Runs `git args` with no prompt, no optional locks, no stdin; kills it at
/// `deadline`. `None` when it cannot start or runs out of time.
fn git(args: &[&str], deadline: Instant) -> Option<GitOutput> {
    if Instant::now() >= deadline {
        return None;
    }
    let mut child = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read on a thread of its own: a pipe that fills must not stall git,
    // and a descendant holding the pipe open must not stall us.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    if let Some(stdout) = child.stdout.take() {
        let _ = std::thread::Builder::new()
            .name("raindrop-app-git-read".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let _ = stdout.take(MAX_OUTPUT).read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
    }
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    let out = rx.recv_timeout(wait).ok()?;
    Some(GitOutput {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn plan_with(config: &AppGit, vars: &[(&str, &str)]) -> Plan {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        plan(config, &|k| map.get(k).cloned())
    }

    fn sha(s: &str) -> AppGitInfo {
        AppGitInfo {
            commit_sha: Some(s.to_owned()),
            ..AppGitInfo::default()
        }
    }

    #[test]
    fn options_beat_variables_and_stop_detection() {
        let p = plan_with(
            &AppGit::new().commit_sha("from-options"),
            &[
                ("RAINDROP_COMMIT_SHA", "from-env"),
                ("RAINDROP_BRANCH", "env-branch"),
                ("VERCEL", "1"),
                ("VERCEL_GIT_COMMIT_SHA", SHA_A),
            ],
        );
        let want = AppGitInfo {
            commit_sha: Some("from-options".into()),
            commit_dirty: None,
            branch: Some("env-branch".into()),
        };
        assert_eq!(p, Plan::Done(want));
        let p = plan_with(
            &AppGit::new(),
            &[("RAINDROP_COMMIT_SHA", "from-env"), ("VERCEL", "1")],
        );
        assert_eq!(p, Plan::Done(sha("from-env")));
    }

    #[test]
    fn deployment_beats_local_git_and_ci_is_the_fallback() {
        let vars = [
            ("RAILWAY_ENVIRONMENT", "production"),
            ("RAILWAY_GIT_COMMIT_SHA", SHA_A),
            ("RAILWAY_GIT_BRANCH", "main"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SHA", SHA_B),
        ];
        assert_eq!(plan_with(&AppGit::new(), &vars), Plan::Done(sha(SHA_A)));
        // Unmarked deployment variables are ignored.
        let p = plan_with(&AppGit::new(), &vars[1..]);
        assert_eq!(
            p,
            Plan::Lookup {
                explicit: AppGitInfo::default(),
                fallback: Some(sha(SHA_B)),
                detect_branch: false
            }
        );
        // Heroku; a malformed automatic SHA is not a commit.
        let p = plan_with(
            &AppGit::new(),
            &[("DYNO", "web.1"), ("HEROKU_SLUG_COMMIT", "not-hex")],
        );
        assert!(matches!(p, Plan::Lookup { fallback: None, .. }));
        let p = plan_with(
            &AppGit::new().detect_branch(true),
            &[
                ("VERCEL", "1"),
                ("VERCEL_GIT_COMMIT_SHA", SHA_A),
                ("VERCEL_GIT_COMMIT_REF", "feat/x"),
            ],
        );
        let want = AppGitInfo {
            commit_sha: Some(SHA_A.into()),
            commit_dirty: None,
            branch: Some("feat/x".into()),
        };
        assert_eq!(p, Plan::Done(want));
    }

    #[test]
    fn auto_detect_off_keeps_only_explicit_values() {
        let vars = [
            ("RAINDROP_GIT_AUTO_DETECT", "false"),
            ("RAINDROP_COMMIT_DIRTY", "true"),
            ("VERCEL", "1"),
            ("VERCEL_GIT_COMMIT_SHA", SHA_A),
        ];
        let want = AppGitInfo {
            commit_dirty: Some(true),
            ..AppGitInfo::default()
        };
        assert_eq!(plan_with(&AppGit::new(), &vars), Plan::Done(want));
    }

    #[test]
    fn odd_bytes_are_dropped_and_lengths_capped() {
        let long = "b".repeat(10_000);
        let vars = [
            ("RAINDROP_COMMIT_SHA", "abc\n\r\u{0}\"def"),
            ("RAINDROP_BRANCH", long.as_str()),
        ];
        let Plan::Done(info) = plan_with(&AppGit::new(), &vars) else {
            panic!("explicit values end the search")
        };
        assert_eq!(info.commit_sha.as_deref(), Some("abc\"def"));
        assert_eq!(info.branch.unwrap().len(), MAX_BRANCH_CHARS);
    }
}
