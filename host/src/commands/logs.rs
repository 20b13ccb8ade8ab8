//! `launcher logs` (the history of jobs: list, show, search, turn off and on) and `launcher
//! rerun` (run a recorded job again, with some parameters changed). The history lives in the
//! job store (see [`crate::job::store`]); recording happens when a job ends
//! ([`crate::job::exec`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use launcher_sdk::ParamType;
use launcher_sdk::serde_json::{self, Value};

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::escape::printable;
use crate::failure::{Class, Failure, fail};
use crate::home::{Config, Home};
use crate::job::new_id;
use crate::job::plan::JobPlan;
use crate::job::store::{Entry, Filter, Store};
use crate::{output, params, settings};

/// What `launcher logs` lists.
pub(crate) struct ListArgs {
    pub(crate) limit: usize,
    pub(crate) tool: Option<String>,
    pub(crate) task: Option<String>,
    pub(crate) since: Option<String>,
    pub(crate) search: Option<String>,
    pub(crate) json: bool,
}

/// Lists history entries, newest first.
pub(crate) fn list(args: ListArgs) -> Result<()> {
    let since_ms = match &args.since {
        Some(since) => Some(parse_since(since, now_ms())?),
        None => None,
    };
    let filter = Filter {
        limit: args.limit,
        tool: args.tool,
        task: args.task,
        since_ms,
        search: args.search,
    };
    let home = Home::locate()?;
    let found = if Store::path(home.data_dir()).exists() {
        Store::open(home.data_dir())?.history(&filter)?
    } else {
        Vec::new()
    };
    if args.json {
        let items: Vec<Value> = found.iter().map(entry_json).collect::<Result<_>>()?;
        print(&format!("{}\n", serde_json::to_string_pretty(&items)?));
        return Ok(());
    }
    if found.is_empty() {
        eprintln!("no jobs in the history match; `launcher run ...` records each job it runs");
        return Ok(());
    }
    let mut out = String::new();
    for entry in &found {
        let input = entry
            .input
            .as_deref()
            .map(|i| {
                let flat: String = i.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut head: String = flat.chars().take(40).collect();
                if head.len() < flat.len() {
                    head.push('…');
                }
                format!("  {:?}", printable(&head))
            })
            .unwrap_or_default();
        let outputs: Vec<String> = entry
            .outputs
            .iter()
            .map(|o| match &o.path {
                Some(path) => path.display().to_string(),
                None => "stdout".to_string(),
            })
            .collect();
        let outputs = if outputs.is_empty() {
            String::new()
        } else {
            format!("  -> {}", outputs.join(", "))
        };
        out.push_str(&format!(
            "{}  {}  {} {}  {} {}{input}{outputs}\n",
            entry.id,
            format_time(entry.started_ms),
            entry.tool,
            entry.task,
            entry.status,
            format_duration(entry.duration_ms),
        ));
    }
    print(&out);
    Ok(())
}

/// Shows one history entry in full.
pub(crate) fn show(id: &str, as_json: bool) -> Result<()> {
    let entry = find(id)?;
    if as_json {
        let mut document = entry_json(&entry)?;
        document["schema"] = serde_json::json!(crate::commands::JSON_SCHEMA);
        print(&format!("{}\n", serde_json::to_string_pretty(&document)?));
        return Ok(());
    }
    let mut out = format!("job {}\n", entry.id);
    out.push_str(&format!(
        "started:  {} UTC, took {}\n",
        format_time(entry.started_ms),
        format_duration(entry.duration_ms)
    ));
    out.push_str(&format!(
        "tool:     {}\ntask:     {}\n",
        entry.tool, entry.task
    ));
    out.push_str(&format!(
        "status:   {} (exit {})\n",
        entry.status, entry.exit_code
    ));
    if let Some(error) = &entry.error {
        out.push_str(&format!("error:    {}\n", printable(error)));
    }
    if let Some(conversation) = &entry.conversation {
        out.push_str(&format!(
            "conversation: {conversation} (`launcher conversations {conversation}`)\n"
        ));
    }
    if let Some(of) = &entry.rerun_of {
        out.push_str(&format!("rerun of: {of}\n"));
    }
    if !entry.params.is_empty() {
        out.push_str("parameters:\n");
        for (name, value) in &entry.params {
            out.push_str(&format!(
                "  {name} = {}\n",
                printable(&params::show_value(value))
            ));
        }
    }
    if let (Some(bytes), Some(sha)) = (entry.input_bytes, &entry.input_sha256) {
        out.push_str(&format!(
            "input:    {bytes} bytes, sha256 {sha}; it began:\n{}\n",
            printable(entry.input.as_deref().unwrap_or_default())
        ));
    }
    if !entry.outputs.is_empty() {
        out.push_str("outputs:\n");
        for o in &entry.outputs {
            let place = match &o.path {
                Some(path) => path.display().to_string(),
                None => "stdout".to_string(),
            };
            out.push_str(&format!(
                "  {place}  ({}, {} bytes)\n",
                o.media_type, o.size
            ));
        }
    }
    print(&out);
    Ok(())
}

/// `launcher logs on|off|status`: `on` is `Some(true)`, `off` `Some(false)`, status `None`.
pub(crate) fn switch(on: Option<bool>, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    if let Some(on) = on {
        Store::set_logging(home.data_dir(), on)?;
    }
    let path = Store::path(home.data_dir());
    let entries = if path.exists() {
        Store::open(home.data_dir())?.history_len()?
    } else {
        0
    };
    let recording = Store::logging(home.data_dir());
    if as_json {
        return crate::commands::print_json(serde_json::json!({
            "recording": recording,
            "database": path,
            "jobs": entries,
        }));
    }
    print(&format!(
        "history is {}: {}\n{entries} jobs recorded\n",
        if recording { "on" } else { "off" },
        path.display()
    ));
    Ok(())
}

/// `launcher rerun ID [--name value ...]`: the recorded tool, task and parameters with the
/// changes given, new outputs and a new history entry.
pub(crate) fn rerun(globals: &Globals, id: &str, raw: &[String]) -> Result<()> {
    let entry = find(id)?;
    let home = Home::locate()?;
    let config_path = home.config_file();
    let config = Config::load(&home)?;
    let catalog = Catalog::discover(&home, &config);
    globals.report_catalog(&catalog);
    let (raw, dry_run) = crate::commands::run::take_dry_run(raw.to_vec());
    let plan = plan_rerun(&entry, &raw, &home, &catalog, &config, &config_path)?;
    if dry_run {
        let report = crate::commands::run::dry_run_report(
            &plan,
            &crate::commands::run::cli_settings(&raw),
            &config,
        )?;
        print(&printable(&report));
        return Ok(());
    }
    let new = plan.id.clone();
    let outcome = crate::commands::run::execute(globals, &home, plan);
    if let Ok(store) = Store::open(home.data_dir()) {
        let _ = store.set_rerun_of(&new, &entry.id);
    }
    outcome.map(|_| ())
}

/// Plans a rerun of `entry` with the changes `raw` gives: `--name value` for a parameter,
/// and `-o`, `--force`, `--json`, `--yes`, `--detach`, `--play`, `--cancel-remote`,
/// `--set NAME=VALUE` as in `run`. Settings are resolved anew: the history never has them.
fn plan_rerun(
    entry: &Entry,
    raw: &[String],
    home: &Home,
    catalog: &Catalog,
    config: &Config,
    config_path: &Path,
) -> Result<JobPlan> {
    let Some(tool) = catalog.tool(&entry.tool) else {
        return Err(Failure::new(
            Class::NotFound,
            format!(
                "job {} was run by tool `{}`, which is no longer installed",
                entry.id, entry.tool
            ),
        )
        .into());
    };
    let described = describe_again(entry, raw, home, config, tool)?;
    let tool = described.as_ref().unwrap_or(tool);
    let task = tool.spec.task(&entry.task).ok_or_else(|| {
        fail(
            Class::NotFound,
            format!(
                "tool `{}` no longer performs task `{}`",
                entry.tool, entry.task
            ),
        )
    })?;
    let specs = params::params_of(&task, &tool.spec);
    let mut values = entry.params.clone();
    let (mut explicit, mut force, mut json, mut yes) = (None, false, false, false);
    let (mut detach, mut play, mut cancel_remote) = (false, false, false);
    let mut cli_settings = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let arg = raw[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg, None),
        };
        i += 1;
        let next = raw.get(i).map(String::as_str);
        let mut value = |what: &str| -> Result<String> {
            take_value(raw, &mut i, inline.as_deref(), flag, what)
        };
        match flag {
            "-o" | "--output" => explicit = Some(PathBuf::from(value("a file")?)),
            "--force" => force = true,
            "--json" => json = true,
            "--yes" => yes = true,
            "--detach" => detach = true,
            "--play" => play = true,
            "--cancel-remote" => cancel_remote = true,
            "-v" | "-q" => {}
            "--set" => {
                let item = value("NAME=VALUE")?;
                match item.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        cli_settings.push((k.trim().to_string(), v.to_string()));
                    }
                    _ => {
                        return Err(fail(
                            Class::Usage,
                            format!("--set takes NAME=VALUE, not `{item}`"),
                        ));
                    }
                }
            }
            f if f.starts_with("--") && f.len() > 2 => {
                let name = &f[2..];
                let Some(spec) = specs
                    .iter()
                    .find(|p| p.name == name || params::flag_name(&p.name) == name)
                else {
                    return Err(Failure::new(
                        Class::Usage,
                        format!(
                            "task `{}` of tool `{}` has no parameter {f}",
                            task.name, tool.spec.id
                        ),
                    )
                    .hint(format!(
                        "`launcher run {} --task {} --help` lists its parameters",
                        tool.spec.id, task.name
                    ))
                    .into());
                };
                let given = if spec.ty == ParamType::Boolean
                    && inline.is_none()
                    && next.is_none_or(|next| next.starts_with("--"))
                {
                    "true".to_string()
                } else {
                    value("its new value")?
                };
                let checked = params::check(spec, &given)?;
                let new = if spec.multiple {
                    let mut items = match values.get(&spec.name) {
                        Some(Value::Array(items)) if changed.contains(&spec.name) => items.clone(),
                        _ => Vec::new(),
                    };
                    items.push(checked);
                    Value::Array(items)
                } else {
                    checked
                };
                values.insert(spec.name.clone(), new);
                changed.push(spec.name.clone());
            }
            other => {
                return Err(Failure::new(
                    Class::Usage,
                    format!("`{other}`: give each change as --name value"),
                )
                .hint("e.g. `launcher rerun ID --voice en-gb`")
                .into());
            }
        }
    }
    if let (Some(bytes), Some(text)) = (entry.input_bytes, params::text_param(&task, &specs))
        && !changed.iter().any(|c| c == text)
    {
        return Err(Failure::new(
            Class::InvalidInput,
            format!(
                "the input of job {} was {bytes} bytes, so the history kept only its digest",
                entry.id
            ),
        )
        .hint(format!(
            "give the text again: `launcher rerun {} --{} \"...\"`",
            entry.id,
            params::flag_name(text)
        ))
        .into());
    }
    let values = launcher_sdk::check_params(&specs, &values).map_err(|e| {
        fail(
            Class::InvalidInput,
            format!("--{} {}", params::flag_name(&e.param), e.problem),
        )
    })?;
    let id = new_id();
    let outputs = output::Plan {
        explicit,
        force,
        json,
        stem: task.name.clone(),
        dir: PathBuf::from("."),
        job_id: id.clone(),
        capture: task.name == "chat",
        format_param: specs.iter().any(|p| p.name == "format"),
    };
    let makes_files = task
        .outputs
        .iter()
        .any(|o| o.kind != launcher_sdk::ContentKind::Text);
    output::Outputs::precheck(&outputs, makes_files)?;
    crate::owners::check_settings(tool, config)?;
    let resolved = settings::resolve(&tool.spec, &cli_settings, config, config_path)?;
    let secrets = settings::secrets(&resolved);
    Ok(JobPlan {
        id,
        tool: tool.clone(),
        reasons: vec![format!("rerunning job {} of `{}`", entry.id, entry.tool)],
        picked: false,
        task,
        params: values,
        settings: resolved,
        secrets,
        outputs,
        json,
        detach,
        play,
        cancel_remote,
        yes,
        cancel_requested: false,
        collect: false,
        confirm_over: config.confirm_over(),
        resume: None,
        history: Vec::new(),
        conversation: None,
    })
}

/// Returns `tool` described anew for a rerun when the parameters describe it (replicate's
/// `--model`): with the recorded values, or the new ones `raw` gives.
fn describe_again(
    entry: &Entry,
    raw: &[String],
    home: &Home,
    config: &Config,
    tool: &crate::catalog::Tool,
) -> Result<Option<crate::catalog::Tool>> {
    let mut args = serde_json::Map::new();
    for name in &tool.spec.described_by {
        let flag = format!("--{}", params::flag_name(name));
        let given = raw.iter().enumerate().find_map(|(i, arg)| {
            match arg.strip_prefix(&flag)?.strip_prefix('=') {
                Some(inline) => Some(inline.to_string()),
                None if arg == &flag => raw.get(i + 1).cloned(),
                None => None,
            }
        });
        if let Some(value) = given
            .map(Value::String)
            .or_else(|| entry.params.get(name).cloned())
        {
            args.insert(name.clone(), crate::job::plan::describing_value(value));
        }
    }
    crate::job::plan::described(tool, args, |tool, args| {
        crate::catalog::describe_tool(home, config, tool, args)
    })
}

/// Returns the value of option `flag`: given inline (`--rate=200`) or the next argument.
fn take_value(
    raw: &[String],
    i: &mut usize,
    inline: Option<&str>,
    flag: &str,
    what: &str,
) -> Result<String> {
    if let Some(v) = inline {
        return Ok(v.to_string());
    }
    let v = raw
        .get(*i)
        .cloned()
        .ok_or_else(|| fail(Class::Usage, format!("{flag} takes a value ({what})")))?;
    *i += 1;
    Ok(v)
}

/// Returns the history entry `id` names (a unique prefix is enough).
fn find(id: &str) -> Result<Entry> {
    let home = Home::locate()?;
    let found = if Store::path(home.data_dir()).exists() {
        Store::open(home.data_dir())?
            .entry(id)
            .map_err(|e| fail(Class::Usage, format!("{e:#}")))?
    } else {
        None
    };
    found.ok_or_else(|| {
        Failure::new(Class::NotFound, format!("no job `{id}` in the history"))
            .hint("`launcher logs` lists the recorded jobs")
            .into()
    })
}

/// An entry as JSON, with its start time as an RFC 3339 date too.
fn entry_json(entry: &Entry) -> Result<Value> {
    let mut value = serde_json::to_value(entry)?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "started".into(),
            Value::String(format!(
                "{}Z",
                format_time(entry.started_ms).replace(' ', "T")
            )),
        );
    }
    Ok(value)
}

/// Parses `--since`: an age (`90s`, `30m`, `1h`, `2d`, `1w`) or an RFC 3339 date or time
/// (`2026-11-30`, `2026-11-30T08:00:00Z`, `2026-11-30T08:00:00+01:00`); returns ms since the
/// epoch.
pub(crate) fn parse_since(text: &str, now_ms: i64) -> Result<i64> {
    let bad = || {
        Failure::new(
            Class::Usage,
            format!("--since `{text}` is neither an age nor a date"),
        )
        .hint("give an age such as 30m, 1h, 2d or 1w, or a date such as 2026-11-30 or 2026-11-30T08:00:00Z")
    };
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic())
        && text.len() > 1
        && text[..text.len() - 1].bytes().all(|b| b.is_ascii_digit())
    {
        let number: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad().into()),
        };
        return Ok(now_ms - number * secs * 1000);
    }
    parse_date(text).ok_or_else(|| bad().into())
}

/// Parses `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.frac]]` and `Z` or `±HH:MM` (UTC
/// when absent).
fn parse_date(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
            Some(i) => (&time[..i], &time[i..]),
            None => (time, ""),
        };
        let clock = clock.split('.').next()?;
        let mut fields = clock.split(':');
        let h = num(fields.next()?)?;
        let min = num(fields.next()?)?;
        let s = fields.next().map(num).unwrap_or(Some(0))?;
        if fields.next().is_some() || h > 23 || min > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + min * 60 + s;
        if let Some(sign) = offset.chars().next().filter(|c| *c == '+' || *c == '-') {
            let (oh, om) = offset[1..].split_once(':')?;
            let shift = num(oh)? * 3600 + num(om)? * 60;
            secs -= if sign == '+' { shift } else { -shift };
        } else if !offset.is_empty() && offset.len() != 1 {
            return None;
        }
    }
    Some(secs * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD HH:MM:SS`, in UTC.
pub(crate) fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn format_duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ages_and_rfc3339_dates() {
        let now = 1_764_532_800_000; // 2025-11-30T20:00:00Z
        assert_eq!(parse_since("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_since("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_since("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(
            parse_since("2025-11-30", now).unwrap(),
            now - 20 * 3_600_000
        );
        assert_eq!(parse_since("2025-11-30T20:00:00Z", now).unwrap(), now);
        assert_eq!(parse_since("2025-11-30T21:00:00+01:00", now).unwrap(), now);
        assert_eq!(
            parse_since("2025-11-30T19:30:00.5-00:30", now).unwrap(),
            now
        );
        for bad in ["yesterday", "1y", "2025-13-01", "h", "2025-11-30T25:00:00Z"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert_eq!(format_time(now), "2025-11-30 20:00:00");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
