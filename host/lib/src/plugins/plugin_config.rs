//! `--plugin-config`: the operator's per-reactor config, grants and limits,
//! and how they combine with command-line flags.

use batpak_runtime::{LogLevel, MAX_INSTANCES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Default wall-time limit of one call into a plugin.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Default memory limit of one plugin instance.
pub const DEFAULT_MEMORY_MB: u64 = 256;
/// Default largest batch handed to `react`.
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Largest config file read (`--plugin-config`, `test --config`): far above
/// any honest config, and refused from the file's size before reading.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Limits {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_batch: Option<usize>,
}

#[derive(Deserialize, Serialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_emits: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_batch: Option<usize>,
    /// This reactor's own log level (beats `--log-level`), so one chatty
    /// plugin can be turned down without silencing the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// Parallel instances by key (1 to [`MAX_INSTANCES`]); `run
    /// --instances NAME=N` beats it.
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<u32>,
}

/// The parsed `--plugin-config` file (empty when none was given).
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PluginConfigFile {
    #[serde(default)]
    defaults: Limits,
    #[serde(default)]
    plugins: BTreeMap<String, PluginEntry>,
}

/// The command-line values that per-plugin entries override.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// Wall-time limit of one call into a plugin (`--timeout-ms`).
    pub timeout_ms: Option<u64>,
    /// Memory budget of one instance in MiB (`--memory-mb`).
    pub memory_mb: Option<u64>,
    /// Largest batch handed to `react` (`--max-batch`).
    pub max_batch: Option<usize>,
    /// Lowest level of log lines kept (`--log-level`).
    pub log_level: LogLevel,
    /// Instances per reactor (`--instances NAME=N`): beats the file's
    /// `instances`, which is specific to one reactor too.
    pub instances: BTreeMap<String, u32>,
}

/// What applies to one reactor: per-plugin entry, then flags, then the
/// file's defaults, then built-in defaults.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Wall-time limit of one call.
    pub timeout: Duration,
    /// Memory budget of one instance.
    pub memory_bytes: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// JSON text for `init`.
    pub config: String,
    /// Kinds granted (`None`: every kind the plugin declares).
    pub grant_emits: Option<Vec<String>>,
    /// Lowest level of its log lines kept.
    pub log_level: LogLevel,
    /// How many instances it runs as, each a shard of its region by
    /// entity (1: the reactor alone).
    pub instances: u32,
}

impl PluginConfigFile {
    /// Reads and checks `path`: a regular file of at most
    /// [`MAX_CONFIG_FILE_BYTES`], checked on the open descriptor before a
    /// byte is read (a FIFO or `/dev/zero` is refused at once).
    ///
    /// # Errors
    /// A message naming the file and the offending field (a usage error).
    pub fn read(path: &Path) -> Result<PluginConfigFile, String> {
        let what = |e: &dyn std::fmt::Display| format!("--plugin-config {}: {e}", path.display());
        let text = batpak_runtime::read_regular_text(path, MAX_CONFIG_FILE_BYTES)
            .map_err(|e| format!("--plugin-config {e}"))?;
        let cfg: PluginConfigFile = serde_json::from_str(&text).map_err(|e| what(&e))?;
        let check = |at: String, l: &Limits| -> Result<(), String> {
            if l.timeout_ms == Some(0) || l.memory_mb == Some(0) || l.max_batch == Some(0) {
                return Err(what(&format!(
                    "{at}: timeout_ms, memory_mb and max_batch must be at least 1"
                )));
            }
            Ok(())
        };
        check("defaults".into(), &cfg.defaults)?;
        for (name, e) in &cfg.plugins {
            batpak_runtime::validate_reactor_name(name)
                .map_err(|m| what(&format!("plugins: {m}")))?;
            check_entry(name, e).map_err(|m| what(&m))?;
        }
        Ok(cfg)
    }

    /// Reactor `name`'s entry (`plugins.<name>`) as JSON, `None` when the
    /// file has none: what a cluster stores beside the reactor's version.
    pub fn entry(&self, name: &str) -> Option<serde_json::Value> {
        self.plugins
            .get(name)
            .map(|e| serde_json::to_value(e).expect("an entry serialises"))
    }

    /// This file with reactor `name`'s entry replaced by `entry` (removed
    /// for `None`), checked as [`read`](Self::read) checks one: how a
    /// cluster host runs a reactor with the entry the cluster stores.
    ///
    /// # Errors
    /// The entry is not one (unknown field, bad value): the message names
    /// the field.
    pub fn with_entry(
        &self,
        name: &str,
        entry: Option<&serde_json::Value>,
    ) -> Result<PluginConfigFile, String> {
        let mut out = self.clone();
        match entry {
            None => {
                out.plugins.remove(name);
            }
            Some(v) => {
                let e: PluginEntry = serde_json::from_value(v.clone())
                    .map_err(|err| format!("plugins.{name}: {err}"))?;
                check_entry(name, &e)?;
                out.plugins.insert(name.to_string(), e);
            }
        }
        Ok(out)
    }

    /// The reactor names the file configures.
    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// The settings for reactor `name` (`""` for none: flags and defaults).
    pub fn resolve(&self, flags: &Flags, name: &str) -> Resolved {
        let e = self.plugins.get(name).cloned().unwrap_or_default();
        let d = &self.defaults;
        let timeout_ms = e
            .timeout_ms
            .or(flags.timeout_ms)
            .or(d.timeout_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        let memory_mb = e
            .memory_mb
            .or(flags.memory_mb)
            .or(d.memory_mb)
            .unwrap_or(DEFAULT_MEMORY_MB);
        let max_batch = e
            .max_batch
            .or(flags.max_batch)
            .or(d.max_batch)
            .unwrap_or(DEFAULT_MAX_BATCH);
        Resolved {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: mib_to_bytes(memory_mb),
            max_batch,
            config: e
                .config
                .map(|v| v.to_string())
                .unwrap_or_else(|| "{}".into()),
            grant_emits: e.grant_emits,
            instances: flags
                .instances
                .get(name)
                .copied()
                .or(e.instances)
                .unwrap_or(1),
            // Checked in `read`.
            log_level: e
                .log_level
                .and_then(|l| l.parse().ok())
                .unwrap_or(flags.log_level),
        }
    }
}

/// Checks one reactor's entry; the message names the field
/// (`plugins.<name>.<field>: …`).
fn check_entry(name: &str, e: &PluginEntry) -> Result<(), String> {
    if e.timeout_ms == Some(0) || e.memory_mb == Some(0) || e.max_batch == Some(0) {
        return Err(format!(
            "plugins.{name}: timeout_ms, memory_mb and max_batch must be at least 1"
        ));
    }
    for k in e.grant_emits.iter().flatten() {
        batpak_store::validate_kind(k)
            .map_err(|err| format!("plugins.{name}.grant_emits: {err}"))?;
    }
    if let Some(n) = e.instances {
        check_instances(n).map_err(|m| format!("plugins.{name}.instances: {m}"))?;
    }
    if let Some(l) = &e.log_level {
        l.parse::<LogLevel>()
            .map_err(|err| format!("plugins.{name}.log_level: {err}"))?;
    }
    Ok(())
}

/// Checks a number of instances: 1 to [`MAX_INSTANCES`].
///
/// # Errors
/// The problem and the range, for a usage error.
pub fn check_instances(n: u32) -> Result<(), String> {
    if n == 0 || n > MAX_INSTANCES {
        return Err(format!(
            "{n} instances: a reactor runs as 1 to {MAX_INSTANCES} instances"
        ));
    }
    Ok(())
}

/// Parses `--instances NAME=N`.
///
/// # Errors
/// A message naming the bad part and the expected form.
pub fn parse_instances_flag(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("--instances {text:?}: expected NAME=N, e.g. inventory=2"))?;
    batpak_runtime::validate_reactor_name(name).map_err(|m| format!("--instances: {m}"))?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("--instances {text:?}: {n:?} is not a number of instances"))?;
    check_instances(n).map_err(|m| format!("--instances {name}={n}: {m}"))?;
    Ok((name.to_string(), n))
}

/// MiB to bytes, saturating.
pub fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<PluginConfigFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, text).unwrap();
        PluginConfigFile::read(&p)
    }

    #[test]
    fn per_plugin_beats_flags_beats_defaults() {
        let cfg = file(
            r#"{"defaults": {"timeout_ms": 7, "memory_mb": 9},
                "plugins": {"a": {"timeout_ms": 1, "log_level": "warn", "config": {"x": 1}}}}"#,
        )
        .unwrap();
        let flags = Flags {
            memory_mb: Some(3),
            ..Flags::default()
        };
        let a = cfg.resolve(&flags, "a");
        assert_eq!(a.timeout, Duration::from_millis(1));
        assert_eq!(a.memory_bytes, 3 << 20);
        assert_eq!(a.max_batch, DEFAULT_MAX_BATCH);
        assert_eq!(a.log_level, LogLevel::Warn);
        assert_eq!(a.config, r#"{"x":1}"#);
        let b = cfg.resolve(&flags, "b");
        assert_eq!(b.timeout, Duration::from_millis(7));
        assert_eq!(b.log_level, LogLevel::Info);
        assert_eq!(b.config, "{}");
        assert_eq!(b.instances, 1);
    }

    #[test]
    fn instances_come_from_the_flag_then_the_file() {
        let cfg = file(r#"{"plugins": {"a": {"instances": 3}, "b": {"instances": 2}}}"#).unwrap();
        let mut flags = Flags::default();
        flags.instances.insert("b".into(), 4);
        assert_eq!(cfg.resolve(&flags, "a").instances, 3);
        assert_eq!(cfg.resolve(&flags, "b").instances, 4);
        assert_eq!(cfg.resolve(&flags, "c").instances, 1);
        assert_eq!(parse_instances_flag("inv=2"), Ok(("inv".into(), 2)));
        assert!(parse_instances_flag("inv").unwrap_err().contains("NAME=N"));
        assert!(parse_instances_flag("inv=0")
            .unwrap_err()
            .contains("1 to 64"));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = file(r#"{"plugins": {"a": {"log_level": "loud"}}}"#).unwrap_err();
        assert!(e.contains("plugins.a.log_level"), "{e}");
        let e = file(r#"{"plugins": {"a": {"max_batch": 0}}}"#).unwrap_err();
        assert!(e.contains("plugins.a") && e.contains("at least 1"), "{e}");
        let e = file(r#"{"plugins": {"a": {"instances": 0}}}"#).unwrap_err();
        assert!(
            e.contains("plugins.a.instances") && e.contains("1 to 64"),
            "{e}"
        );
        let e = file(r#"{"plugins": {"a": {"grant_emit": []}}}"#).unwrap_err();
        assert!(e.contains("grant_emit"), "{e}");
    }

    #[test]
    fn an_entry_round_trips_and_a_bad_one_is_named() {
        let cfg = file(r#"{"plugins": {"a": {"config": {"x": 1}, "max_batch": 4}}}"#).unwrap();
        let a = cfg.entry("a").unwrap();
        assert_eq!(a, serde_json::json!({"config": {"x": 1}, "max_batch": 4}));
        assert_eq!(cfg.entry("b"), None);
        let moved = PluginConfigFile::default()
            .with_entry("b", Some(&a))
            .unwrap();
        let b = moved.resolve(&Flags::default(), "b");
        assert_eq!((b.config.as_str(), b.max_batch), (r#"{"x":1}"#, 4));
        assert_eq!(cfg.with_entry("a", None).unwrap().entry("a"), None);
        let e = cfg
            .with_entry("a", Some(&serde_json::json!({"max_batch": 0})))
            .unwrap_err();
        assert!(e.contains("plugins.a") && e.contains("at least 1"), "{e}");
        let e = cfg
            .with_entry("a", Some(&serde_json::json!({"grant": []})))
            .unwrap_err();
        assert!(e.contains("plugins.a") && e.contains("grant"), "{e}");
    }

    #[test]
    fn a_device_or_directory_is_refused_naming_what_it_is() {
        let e = PluginConfigFile::read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e,
            "--plugin-config /dev/zero: not a regular file (it is a character device); give the path of a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = PluginConfigFile::read(dir.path()).unwrap_err();
        assert!(e.contains("(it is a directory)"), "{e}");
    }
}
