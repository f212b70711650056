//! `bento functions [ls]`, `bento functions show F` and `bento functions rm F...`.

use super::simple::print_json;
use super::table::{bytes, render};
use super::time::utc_and_ago;
use super::{out, say, FunctionsArgs, FunctionsCommand};
use crate::wire::api::FunctionInfo;

pub(super) async fn run(args: FunctionsArgs) -> anyhow::Result<i32> {
    match args.command {
        None => super::simple::functions(&args.server, args.json.json).await,
        Some(FunctionsCommand::Ls { json, server }) => {
            super::simple::functions(&server, json.json).await
        }
        Some(FunctionsCommand::Show {
            function,
            json,
            server,
        }) => {
            let client = server.client()?;
            if json.json {
                return print_json(&client.function_json(&function).await?);
            }
            let info = client.function(&function).await?;
            out(describe(&info).trim_end())?;
            Ok(0)
        }
        Some(FunctionsCommand::Rm { functions, server }) => {
            let client = server.client()?;
            // Like `docker rm`: each is tried; the ids removed go to stdout,
            // failures to stderr, and any failure makes the exit code 1.
            let mut code = 0;
            for f in &functions {
                match client.delete_function(f).await {
                    Ok(info) => out(&info.id)?,
                    Err(e) => {
                        say(&format!("bento: {f}: {e}"));
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}

/// One `key  value` line per fact, as `bento inspect` prints a session.
fn describe(f: &FunctionInfo) -> String {
    let rows = vec![
        vec!["id".to_string(), f.id.clone()],
        vec!["name".into(), f.name.clone().unwrap_or_else(|| "-".into())],
        vec!["image".into(), f.image.clone()],
        vec!["size".into(), bytes(f.size)],
        vec!["created".into(), utc_and_ago(f.created_at)],
    ];
    let table = render(&["", ""], &rows);
    // `render` aligns the values; its (empty) header row is left out.
    table
        .split_once('\n')
        .map_or(table.clone(), |(_, rest)| rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_has_a_line_per_fact() {
        let text = describe(&FunctionInfo {
            id: "fn-0b6f2c1d9e8a".into(),
            name: None,
            image: "python".into(),
            size: 2048,
            created_at: 1_763_764_800,
            filename: "function.py".into(),
        });
        for want in [
            "id       fn-0b6f2c1d9e8a\n",
            "name     -\n",
            "image    python\n",
            "size     2.0 KiB\n",
            "created  2025-11-21 22:40:00 UTC (",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
