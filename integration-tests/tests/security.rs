//! The security suite: the security bullets of the quality bars
//! (`quality.md`, "Security") and where each is tested.
//!
//! | bullet | test |
//! |---|---|
//! | token server: every row of wire.md §3 | `token-server/tests/exchange.rs` `every_row_of_the_exchange_table_and_no_secret_in_the_logs`, `require_v2_refuses_v1`, `oversized_header_is_431_and_a_body_is_never_needed`; `token-server/tests/abuse.rs` (window, nonce memory, two headers) |
//! | fuzz targets | `fuzz/` (`cargo xtask fuzz [SECONDS]`): `exchange_decode` (bearer decoder), `url_policy`, `search_query` (devserver search language), `jsonrpc_framing` (MCP JSON-RPC framing), `credential_mapping` |
//! | no token or ciphertext in the logs of the whole suite | `cargo xtask test` scans every daemon log the suite captured for every secret the tests handed a daemon or registered (`integration_tests::register_secret`: API tokens, OIDC client secrets, issued OIDC tokens, credential tokens, key files), and for anything shaped like an exchange ciphertext, in-process servers' logs included (`integration_tests::TeeLog`); a whole-suite scan of no log or no secret fails (`xtask/src/suite.rs` `a_whole_suite_scan_of_nothing_fails`) |
//! | no secret value on any command line | here `every_binary_refuses_every_secret_flag_with_a_value` (every flag of every binary that reads a secret variable, found from `--help`) |
//! | no secret in `--help` | here `no_binary_shows_a_secret_in_its_help` (all six binaries, every subcommand, every secret variable set); per crate: `devserver/tests/lifecycle.rs` `help_documents_env_vars_but_never_secret_values`, `token-server/tests/cli.rs` `help_names_every_env_var_and_hides_secret_values`, `control-plane/tests/projects_and_config.rs` `help_documents_env_vars_and_hides_secret_values`, `runner-client/tests/cli.rs` `help_documents_every_variable_without_secret_values` |
//! | no secret in panics | `daemon/tests/panic_output.rs` `a_panic_quoting_a_secret_prints_it_redacted` (the hook every binary installs with its logging; the runner client calls it itself) |
//! | no secret in errors | `credential-entrypoint/tests/entrypoint.rs` `fail_closed_paths_exit_non_zero_and_never_start_the_child`; `protocol` `url_policy::tests::errors_never_echo_the_url`, `exchanger::tests::transport_errors_do_not_echo_the_url`; `mcp-sidecar/tests/token.rs` (`assert_no_secret`) |
//! | secrets in a redacting type | `ambient_protocol::Secret` (`Debug`/`Display` print `***`): `protocol` `secret::tests::debug_and_display_hide_the_value` |
//! | credential fetch: the cluster-local host table, URLs whose parsed host differs | `protocol` `url_policy::tests::cluster_local_table` (every row of quality.md: `evil.svc.example.com`, `svc`, `a..svc`, IP literals, uppercase, trailing dots, userinfo, `http:evil.com/://x.svc/`, `http:/evil.com/://x.svc`, `http:\\evil.com\://api.ns.svc:8000/`, `HTTP:evil.com/://localhost`, backslashes, tabs/CR/LF, spaces), `every_combination_of_tricky_parts_connects_to_the_checked_host`; the fuzz target `url_policy`; the binary: `entrypoint.rs` ("external api", "confused api") |
//! | token server under abuse: abandoned requests leave no trace; one address cannot hold every connection | `token-server/tests/abuse.rs` `abandoned_requests_leave_no_trace`, `one_address_cannot_hold_every_connection`; `token-server/tests/flood.rs` |
//! | pods: restricted security context, no secret as a literal env value | `control-plane` `objects::tests::every_container_has_a_restricted_security_context`, `objects::tests::no_secret_is_a_literal_env_value`, `control-plane/tests/render.rs`; the fake API server enforces PodSecurity `restricted` on every pod the control plane creates (`control-plane/tests/fake_kube_rules.rs` `admission_validates_names_and_labels_and_enforces_restricted_pods`) |

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{bin_path, names_secret, output_within};

/// Every binary, and the secret variables it must know (so the check below
/// cannot pass on a binary whose help lost its environment section).
const BINARIES: &[(&str, &[&str])] = &[
    (
        "ambient-devserver",
        &[
            "AMBIENT_DEVSERVER_TOKEN",
            "AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET",
        ],
    ),
    (
        "ambient-token-server",
        &["AMBIENT_API_TOKEN", "OIDC_CLIENT_SECRET"],
    ),
    (
        "ambient-control-plane",
        &[
            "AMBIENT_API_TOKEN",
            "OIDC_CLIENT_SECRET",
            "ANTHROPIC_API_KEY",
        ],
    ),
    ("ambient-mcp", &["AMBIENT_TOKEN"]),
    ("credential-entrypoint", &[]),
    ("ambient-runner-client", &["BOT_TOKEN"]),
];

/// Names the secret rule matches that hold no secret: the *name* of a
/// Kubernetes Secret, a protocol version, the token server's own settings
/// (`TOKEN_SERVER_…`, the control plane's `CP_TOKEN_…`), paths.
fn holds_no_secret(name: &str) -> bool {
    name == "IMAGE_PULL_SECRET"
        || name.ends_with("_PROTOCOL")
        || name.ends_with("_FILE")
        || name.ends_with("_FILES")
        || ["TOKEN_SERVER_", "CP_TOKEN_"].iter().any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| !names_secret(rest))
        })
}

/// The value a variable is set to: unique, so any sighting is a leak.
fn value_of(name: &str) -> String {
    format!("leak-canary-{name}-5e1f")
}

/// `--help` output (stdout and stderr) with `env` set.
fn help(bin: &str, words: &[&str], env: &[(String, String)]) -> String {
    let child = Command::new(bin_path(bin))
        .args(words)
        .arg("--help")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let out = output_within(child, Duration::from_secs(30), &format!("{bin} --help"));
    assert!(out.status.success(), "{bin} {words:?} --help: {out:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The variable names of every `[env: NAME=…]` / `[env: NAME]` in `text`.
fn env_names(text: &str) -> BTreeSet<String> {
    text.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

/// The subcommands listed under `Commands:` (but `help`).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_binary_shows_a_secret_in_its_help() {
    for (bin, must_know) in BINARIES {
        let top = help(bin, &[], &[]);
        let mut pages: Vec<Vec<String>> = vec![Vec::new()];
        pages.extend(subcommands(&top).into_iter().map(|c| vec![c]));
        let mut names = BTreeSet::new();
        for page in &pages {
            let words: Vec<&str> = page.iter().map(String::as_str).collect();
            names.extend(env_names(&help(bin, &words, &[])));
        }
        for name in *must_know {
            assert!(names.contains(*name), "{bin}: {name} not in --help");
        }
        // Every variable set, secret or not: a default read from the
        // environment is what `--help` could show.
        let env: Vec<(String, String)> = names.iter().map(|n| (n.clone(), value_of(n))).collect();
        let secrets: Vec<&String> = names
            .iter()
            .filter(|n| must_know.contains(&n.as_str()) || (names_secret(n) && !holds_no_secret(n)))
            .collect();
        let mut shown = 0;
        for page in &pages {
            let words: Vec<&str> = page.iter().map(String::as_str).collect();
            let text = help(bin, &words, &env);
            shown += names.iter().filter(|n| text.contains(&value_of(n))).count();
            for name in &secrets {
                assert!(
                    !text.contains(&value_of(name)),
                    "{bin} {words:?} --help shows the value of {name}"
                );
            }
        }
        // The values did reach the help: the other variables show theirs.
        assert!(shown > 0, "{bin}: no variable's value shows in --help");
    }
}

#[test]
fn the_help_parsers_read_what_clap_prints() {
    let text = "  --token <T>\n          [env: AMBIENT_TOKEN]\n  --x\n          [env: X_URL=http://a]\n\nCommands:\n  token  Print\n  watch  Watch\n  help   Help\n\nOptions:\n";
    assert_eq!(
        env_names(text),
        BTreeSet::from(["AMBIENT_TOKEN".to_owned(), "X_URL".to_owned()])
    );
    assert_eq!(subcommands(text), ["token", "watch"]);
    assert_eq!(
        flags_with_env(text),
        [("--token".to_owned(), "AMBIENT_TOKEN".to_owned())]
    );
}

/// The value-taking `--flag`s of a `--help` text with the variable each
/// reads (`[env: NAME]` under it).
fn flags_with_env(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut flag: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 6 && trimmed.starts_with('-') {
            flag = trimmed
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .filter(|_| trimmed.contains('<'))
                .map(|w| {
                    w.trim_end_matches(',')
                        .split('=')
                        .next()
                        .unwrap_or(w)
                        .to_owned()
                });
        } else if let (Some(f), Some(names)) = (&flag, env_names(trimmed).first()) {
            found.push((f.clone(), names.clone()));
        }
    }
    found
}

/// What each binary needs on its command line besides a secret flag (the
/// runner client's command; the devserver's OIDC client ID, whose secret
/// is required with it) and the environment that satisfies the rest.
fn companions(
    bin: &str,
) -> (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
) {
    match bin {
        "ambient-runner-client" => (&["token"], &[]),
        "ambient-devserver" => (
            &[
                "--in-memory",
                "--oidc-client-id",
                "c",
                "--log-level",
                "[bad",
            ],
            &[("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", "from-env-4a1b")],
        ),
        _ => (&["--log-level", "[bad"], &[]),
    }
}

#[test]
fn every_binary_refuses_every_secret_flag_with_a_value() {
    const VALUE: &str = "argv-secret-canary-3d9e";
    for (bin, must_know) in BINARIES {
        let secret_flags: Vec<(String, String)> = flags_with_env(&help(bin, &[], &[]))
            .into_iter()
            .filter(|(_, var)| {
                must_know.contains(&var.as_str()) || (names_secret(var) && !holds_no_secret(var))
            })
            .collect();
        let vars: BTreeSet<&str> = secret_flags.iter().map(|(_, v)| v.as_str()).collect();
        for var in *must_know {
            assert!(vars.contains(var), "{bin}: no flag reads {var}");
        }
        let (after, env) = companions(bin);
        for (flag, var) in &secret_flags {
            let child = Command::new(bin_path(bin))
                .arg(flag)
                .arg(VALUE)
                .args(after)
                .env_remove(var)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{bin}: {e}"));
            let out = output_within(child, Duration::from_secs(30), &format!("{bin} {flag}"));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let refusal = format!("{flag} takes no value on the command line");
            assert!(
                stderr.contains(&refusal) && stderr.contains(var.as_str()),
                "{bin} {flag} VALUE was not refused (exit {:?}):\n{stderr}{stdout}",
                out.status.code()
            );
            assert_eq!(out.status.code(), Some(2), "{bin} {flag}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{bin} {flag}: {stderr}");
            assert!(
                !stderr.contains(VALUE) && !stdout.contains(VALUE),
                "{bin} {flag}: the value was echoed"
            );
        }
    }
}
