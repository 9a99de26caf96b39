//! `demo`: builds the example plugins and appends sample orders (the
//! library's [`prepare_demo`]), runs the reactors until idle through the
//! real `run` command and prints the causal tree each order produced.

use anyhow::bail;
use batpak_host_lib::{prepare_demo, print_demo_trees, DemoArgs};
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn demo(_data: &Path, a: DemoArgs) -> anyhow::Result<ExitCode> {
    let job = prepare_demo(&a)?;
    let config = job.config.clone();
    eprintln!("demo: running the reactors until idle: batpak-host run --until-idle --plugin-config {} ...", config.display());
    // Run in-process through the same parser and code as `batpak-host run`.
    let mut argv: Vec<std::ffi::OsString> =
        vec!["batpak-host".into(), "--data".into(), a.dir.clone().into()];
    argv.extend(["run", "--until-idle", "--plugin-config"].map(Into::into));
    argv.push(config.into());
    argv.extend(job.plugins.iter().map(|w| w.clone().into_os_string()));
    let cli = <super::Cli as clap::Parser>::try_parse_from(argv)?;
    let super::Command::Run(run_args) = cli.command else {
        unreachable!("the demo builds a run command")
    };
    let code = super::run::run(&cli.data, run_args)?;
    if code != ExitCode::SUCCESS {
        bail!("running the reactors failed (see above)");
    }
    print_demo_trees(&a.dir)?;
    println!();
    // Show commands the user can paste: the binary as reachable from here.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| {
            let cwd = std::env::current_dir().ok()?;
            p.strip_prefix(cwd).ok().map(|r| r.display().to_string())
        })
        .unwrap_or_else(|| "batpak-host".into());
    println!(
        "Explore the log:   {exe} --data {} events --system",
        a.dir.display()
    );
    println!("Check it:          {exe} --data {} verify", a.dir.display());
    if let Some(dir) = job.left_in {
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_path_buf))
            .unwrap_or(dir);
        let p = shown.display();
        println!(
            "Run it yourself:   {exe} run --plugin-config {p}/shop.json {p}/*.wasm {p}/*.wat   (the four reactors are in {p}/; README, quick start)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
