use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Probe {
    #[command(flatten)]
    config: Config,
}

fn parse(args: &[&str]) -> Config {
    let mut argv = vec!["cp"];
    argv.extend_from_slice(args);
    Probe::try_parse_from(argv)
        .map(|p| p.config)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn auth_rules() {
    assert!(matches!(
        parse(&["--api-token", "t"]).auth(),
        Ok(ApiAuth::Static(_))
    ));
    assert_eq!(parse(&[]).auth().err(), Some(ConfigError::NoAuth));
    // Half of OIDC is contradictory even beside a static token.
    assert!(matches!(
        parse(&["--api-token", "t", "--oidc-client-id", "i"]).auth(),
        Err(ConfigError::HalfOidc(..))
    ));
    // Both complete: OIDC wins (as the reference), with a warning.
    let both = parse(&[
        "--api-token",
        "t",
        "--oidc-client-id",
        "i",
        "--oidc-client-secret",
        "s",
    ]);
    assert!(matches!(both.auth(), Ok(ApiAuth::Oidc { .. })));
    let warnings = both.validate().map(|s| s.warnings).unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.contains("using OIDC")),
        "{warnings:?}"
    );
    assert!(matches!(
        parse(&["--oidc-client-id", "i"]).auth().err(),
        Some(ConfigError::HalfOidc(..))
    ));
    assert!(matches!(
        parse(&["--oidc-client-secret", "s"]).auth().err(),
        Some(ConfigError::HalfOidc(..))
    ));
    // No URL: the reference's SSO endpoint.
    match parse(&["--oidc-client-id", "i", "--oidc-client-secret", "s"]).auth() {
        Ok(ApiAuth::Oidc { token_url, .. }) => assert_eq!(token_url, DEFAULT_OIDC_TOKEN_URL),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse(&[
            "--oidc-client-id",
            "i",
            "--oidc-client-secret",
            "s",
            "--oidc-token-url",
            ""
        ])
        .auth()
        .err(),
        Some(ConfigError::NoOidcUrl)
    );
    let oidc = [
        "--oidc-client-id",
        "i",
        "--oidc-client-secret",
        "s",
        "--oidc-token-url",
        "http://localhost:8000/oidc/token",
    ];
    // Plain http is refused unless explicitly allowed.
    assert!(matches!(
        parse(&oidc).auth(),
        Err(ConfigError::Invalid {
            name: "OIDC_TOKEN_URL",
            ..
        })
    ));
    let mut allowed = oidc.to_vec();
    allowed.push("--allow-insecure-oidc");
    assert!(matches!(parse(&allowed).auth(), Ok(ApiAuth::Oidc { .. })));
    let mut https = oidc.to_vec();
    https[5] = "https://sso.example.com/token";
    assert!(matches!(parse(&https).auth(), Ok(ApiAuth::Oidc { .. })));
}

#[test]
fn errors_never_contain_secrets() {
    let err = parse(&[
        "--api-token",
        "tok-hidden-value",
        "--oidc-client-secret",
        "sec-hidden-value",
    ])
    .auth()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(!err.is_empty());
    assert!(!err.contains("hidden-value"), "{err}");
    let cfg = parse(&["--api-token", "tok-SECRET"]);
    assert!(!format!("{cfg:?}").contains("tok-SECRET"));
}

#[test]
fn runtime_namespace_falls_back() {
    assert_eq!(parse(&[]).runtime_namespace(), "ambient-code");
    assert_eq!(parse(&["--namespace", "ns1"]).runtime_namespace(), "ns1");
    assert_eq!(
        parse(&["--namespace", "ns1", "--runtime-namespace", "ns2"]).runtime_namespace(),
        "ns2"
    );
}

#[test]
fn listen_addresses() {
    assert_eq!(parse_listen("x", ":8080").ok(), "0.0.0.0:8080".parse().ok());
    assert_eq!(
        parse_listen("x", "127.0.0.1:0").ok(),
        "127.0.0.1:0".parse().ok()
    );
    assert!(parse_listen("x", "8080").is_err());
}

#[test]
fn mpp_needs_its_namespace_and_token_url_is_checked() {
    // MPP_CONFIG_NAMESPACE defaults as the reference's; only an empty one is refused.
    let mpp = parse(&["--platform-mode", "mpp"]).pod_config();
    assert_eq!(
        mpp.ok().and_then(|p| p.mpp_config_namespace).as_deref(),
        Some("ambient-code--config")
    );
    assert_eq!(
        parse(&["--platform-mode", "mpp", "--mpp-config-namespace", ""])
            .pod_config()
            .err(),
        Some(ConfigError::MppNamespace)
    );
    assert!(
        parse(&["--platform-mode", "mpp", "--mpp-config-namespace", "x"])
            .pod_config()
            .is_ok()
    );
    assert!(matches!(
        parse(&["--token-url", "ftp://x/token"]).pod_config().err(),
        Some(ConfigError::Invalid { .. })
    ));
}

#[test]
fn installation_id_defaults_to_the_runtime_namespace_and_is_a_label_value() {
    let pod = |args: &[&str]| parse(args).pod_config().map(|p| p.installation);
    assert_eq!(pod(&[]).ok().as_deref(), Some("ambient-code"));
    assert_eq!(
        pod(&["--runtime-namespace", "cp1"]).ok().as_deref(),
        Some("cp1")
    );
    assert_eq!(
        pod(&["--installation-id", "Prod_1.eu"]).ok().as_deref(),
        Some("Prod_1.eu")
    );
    for bad in ["-x", "a b", "x/y", &"a".repeat(64)] {
        let arg = format!("--installation-id={bad}");
        assert!(pod(&[&arg]).is_err(), "{bad}");
    }
}

#[test]
fn quantities_are_checked_at_startup() {
    for ok in [
        "500m", "2", "1Gi", "0.5", ".5", "1e3", "2E-2", "100Ki", "1.5G",
    ] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "abc", "1GB", "-1", "1.2.3", "m", "1e", "1 Gi", "1Gi "] {
        assert!(!is_quantity(bad), "{bad:?}");
    }
    let err = parse(&["--runner-memory-limit", "4GB"]).pod_config().err();
    assert_eq!(
        err,
        Some(ConfigError::Quantity {
            name: "RUNNER_MEMORY_LIMIT",
            value: "4GB".into()
        })
    );
    assert!(err.is_some_and(|e| e.to_string().contains("RUNNER_MEMORY_LIMIT")));
    assert!(matches!(
        parse(&["--sidecar-cpu-limit", "lots"]).pod_config(),
        Err(ConfigError::Quantity {
            name: "SIDECAR_CPU_LIMIT",
            ..
        })
    ));
    // Sidecar overrides apply to the MCP and the credential sidecars.
    let pod = parse(&["--sidecar-memory-limit", "1Gi"])
        .pod_config()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pod.mcp_resources.memory_limit, "1Gi");
    assert_eq!(pod.credential_resources.memory_limit, "1Gi");
    assert_eq!(pod.mcp_resources.memory_request, "128Mi");
    assert_eq!(pod.credential_resources.memory_request, "256Mi");
    assert_eq!(pod.runner_resources.memory_request, "1Gi");
}

#[test]
fn vertex_mode_and_reconcilers_read_as_the_reference() {
    // As the reference reads USE_VERTEX: `1` or `true`, anything else off.
    for (raw, on) in [
        ("1", true),
        ("true", true),
        ("TRUE", false),
        ("0", false),
        ("false", false),
        ("yes-please", false),
    ] {
        let cfg = parse(&["--use-vertex", raw]);
        assert_eq!(cfg.use_vertex, on, "{raw}");
        let vertex = cfg.pod_config().ok().and_then(|p| p.vertex);
        assert_eq!(vertex.is_some(), on);
    }
    let v = parse(&["--use-vertex"])
        .pod_config()
        .ok()
        .and_then(|p| p.vertex)
        .unwrap_or_else(|| panic!("vertex off"));
    assert_eq!(v.region, "global");
    assert_eq!(v.credentials_path, "/app/vertex/ambient-code-key.json");
    assert_eq!(
        (v.secret_namespace.as_str(), v.secret_name.as_str()),
        ("ambient-code", "ambient-vertex")
    );
    assert!(matches!(
        parse(&["--use-vertex", "--vertex-secret-name", "Bad Name"]).pod_config(),
        Err(ConfigError::Invalid {
            name: "VERTEX_SECRET_NAME",
            ..
        })
    ));

    let settings = |args: &[&str]| {
        let mut all = vec!["--api-token", "t"];
        all.extend_from_slice(args);
        parse(&all).validate().unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(settings(&[]).provision);
    assert_eq!(settings(&[]).mode, Mode::Kube);
    assert!(!settings(&["--mode", "test"]).provision);
    assert!(!settings(&["--reconcilers", "tally"]).provision);
    let s = settings(&["--reconcilers", "tally, kube,bogus"]);
    assert!(s.provision);
    assert!(
        s.warnings.iter().any(|w| w.contains("bogus")),
        "{:?}",
        s.warnings
    );
    assert!(Probe::try_parse_from(["cp", "--mode", "prod"]).is_err());
    assert_eq!(
        settings(&["--grpc-service-account", "  svc-1 "])
            .service_identity
            .as_deref(),
        Some("svc-1")
    );
    assert_eq!(
        settings(&["--grpc-service-account", " "]).service_identity,
        None
    );
}

#[test]
fn a_secret_comes_directly_or_from_a_file_never_both() {
    let dir = std::env::temp_dir().join(format!("cp-secret-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("secret");
    std::fs::write(&file, "from-file\n").unwrap_or_else(|e| panic!("{e}"));
    let file = file.to_string_lossy().into_owned();
    for (direct, file_flag) in [
        ("--api-token", "--api-token-file"),
        ("--oidc-client-secret", "--oidc-client-secret-file"),
    ] {
        let mut args = vec![
            "--oidc-client-id",
            "i",
            "--oidc-token-url",
            "https://sso.example.com/token",
        ];
        if direct == "--api-token" {
            args.clear();
        }
        let both = [args.clone(), vec![direct, "d", file_flag, &file]].concat();
        assert_eq!(
            parse(&both).auth().err(),
            Some(ConfigError::TwoTokens),
            "{direct}"
        );
        // An empty direct value counts as unset: the file is used.
        let empty = [args.clone(), vec![direct, "", file_flag, &file]].concat();
        assert!(parse(&empty).auth().is_ok(), "{direct}");
        let only_file = [args, vec![file_flag, &file]].concat();
        assert!(parse(&only_file).auth().is_ok(), "{direct}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
