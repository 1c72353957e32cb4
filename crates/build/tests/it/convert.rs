//! Conversion without running anything: which stages become ops, ARG
//! scoping, the image config and history strings.

use std::collections::HashMap;

use kiln_build::{BaseImage, BuildError, ConvertOptions, ImageSource, convert};
use kiln_dockerfile::Dockerfile;
use kiln_oci::Digest;
use kiln_oci::config::ImageConfig;
use kiln_solver::ops::{KilnOp, SourceOp};
use kiln_store::{ImageRecord, LayerRecord};

/// Base images by normalized name, with the configs tests give them.
#[derive(Default)]
struct Images(HashMap<String, ImageConfig>);

impl Images {
    fn with(mut self, name: &str, config: serde_json::Value) -> Images {
        let config: ImageConfig = serde_json::from_value(config).unwrap();
        self.0.insert(name.to_owned(), config);
        self
    }
}

impl ImageSource for Images {
    fn image(&self, reference: &str) -> Result<Option<BaseImage>, BuildError> {
        let Some(config) = self.0.get(reference) else {
            return Ok(None);
        };
        let d = Digest::sha256_of(reference.as_bytes());
        Ok(Some(BaseImage {
            record: ImageRecord {
                manifest: d.clone(),
                manifest_size: 1,
                manifest_media_type: kiln_oci::media::MANIFEST.into(),
                config: d.clone(),
                config_size: 1,
                layers: vec![LayerRecord {
                    digest: d.clone(),
                    size: 1,
                    media_type: kiln_oci::media::LAYER_TAR.into(),
                    diff_id: d,
                }],
                created: None,
                tags: vec![reference.to_owned()],
            },
            config: config.clone(),
        }))
    }
}

fn busybox() -> Images {
    Images::default().with(
        "docker.io/library/busybox:latest",
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "base"}]
        }),
    )
}

fn plan(
    text: &str,
    opts: &ConvertOptions,
    images: &Images,
) -> Result<kiln_build::Plan, BuildError> {
    let df = Dockerfile::parse(text.as_bytes()).unwrap();
    convert(&df, opts, images)
}

fn history(p: &kiln_build::Plan) -> Vec<(String, bool)> {
    p.image
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect()
}

fn reachable_names(p: &kiln_build::Plan) -> Vec<String> {
    p.graph
        .reachable(&[p.target])
        .into_iter()
        .map(|v| p.graph.vertex(v).name.clone())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn only_stages_the_target_needs_are_converted() {
    let text = "FROM busybox AS unused\nRUN exit 1\nFROM busybox AS dep\nRUN touch /x\n\
                FROM busybox AS app\nCOPY --from=dep /x /x\nFROM app\nRUN false\n";
    let opts = ConvertOptions {
        target: Some("app".into()),
        ..ConvertOptions::default()
    };
    let p = plan(text, &opts, &busybox()).unwrap();
    let names = reachable_names(&p).join("\n");
    assert!(names.contains("[dep 2/2] RUN touch /x"), "{names}");
    assert!(names.contains("[app 2/2] COPY --from=dep /x /x"), "{names}");
    assert!(!names.contains("exit 1"), "{names}");
    assert!(!names.contains("RUN false"), "{names}");
    // Unused stages are not even in the graph.
    assert!(
        p.graph
            .ids()
            .all(|v| !p.graph.vertex(v).name.contains("exit 1")),
        "an unused stage was converted"
    );
}

#[test]
fn args_scope_like_buildkit() {
    let text = "ARG BASE=busybox\nARG V=global\nFROM ${BASE}\nRUN echo $V\nARG V\nRUN echo $V\n\
                ARG W=${V}-w\nENV E=$W\nRUN echo $TARGETARCH\nARG TARGETARCH\nRUN echo $TARGETARCH\n";
    let mut opts = ConvertOptions::default();
    opts.build_args.insert("UNUSED".into(), "1".into());
    opts.build_args
        .insert("HTTP_PROXY".into(), "http://proxy:3128".into());
    let p = plan(text, &opts, &busybox()).unwrap();
    let h: Vec<String> = history(&p).into_iter().map(|h| h.0).collect();
    let arch = kiln_store::host_architecture();
    assert_eq!(
        h[1..],
        [
            "RUN /bin/sh -c echo $V # buildkit".to_owned(),
            "ARG V=global".to_owned(),
            "RUN |1 V=global /bin/sh -c echo $V # buildkit".to_owned(),
            "ARG W=global-w".to_owned(),
            "ENV E=global-w".to_owned(),
            "RUN |2 V=global W=global-w /bin/sh -c echo $TARGETARCH # buildkit".to_owned(),
            format!("ARG TARGETARCH={arch}"),
            format!(
                "RUN |3 V=global W=global-w TARGETARCH={arch} /bin/sh -c echo $TARGETARCH # buildkit"
            ),
        ]
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("[UNUSED]")),
        "{:?}",
        p.warnings
    );
    // The proxy reaches RUN steps, outside the key; declared ARGs are env.
    let exec = p
        .graph
        .ids()
        .filter_map(|v| match &*p.graph.vertex(v).op {
            KilnOp::Exec(e) => Some(e.clone()),
            _ => None,
        })
        .last()
        .unwrap();
    assert!(exec.proxy_env.iter().any(|(k, _)| k == "HTTP_PROXY"));
    assert!(exec.env.iter().any(|(k, v)| k == "W" && v == "global-w"));
    assert!(!exec.env.iter().any(|(k, _)| k == "HTTP_PROXY"));
}

#[test]
fn config_and_history_like_docker() {
    let text = r#"FROM busybox
ENV A=1 B="two words"
LABEL x=y
WORKDIR /w
WORKDIR sub
USER 1000:1000
EXPOSE 80 8000-8001/udp
VOLUME ["/v1", "/v2"]
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
CMD echo hi
ENTRYPOINT ["/e"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=1m30s --retries=3 CMD wget -q localhost
MAINTAINER someone
ONBUILD RUN make
"#;
    let p = plan(text, &ConvertOptions::default(), &busybox()).unwrap();
    let c = p.image.config.clone().unwrap();
    assert_eq!(c.env.unwrap(), ["PATH=/bin", "A=1", "B=two words"]);
    assert_eq!(c.working_dir.as_deref(), Some("/w/sub"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    // An ENTRYPOINT after CMD in the same stage keeps the CMD.
    assert_eq!(
        c.cmd.unwrap(),
        ["/bin/ash", "-eo", "pipefail", "-c", "echo hi"]
    );
    assert_eq!(c.entrypoint.unwrap(), ["/e"]);
    let ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
    assert_eq!(ports, ["80/tcp", "8000/udp", "8001/udp"]);
    assert_eq!(c.on_build.unwrap(), ["RUN make"]);
    assert_eq!(p.image.author.as_deref(), Some("someone"));
    let hc = c.healthcheck.unwrap();
    assert_eq!(
        hc["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q localhost"])
    );
    assert_eq!(hc["Interval"], 90_000_000_000_u64);
    assert_eq!(hc["Retries"], 3);
    let h = history(&p);
    let want: Vec<(&str, bool)> = vec![
        ("base", false),
        ("ENV A=1 B=two words", true),
        ("LABEL x=y", true),
        ("WORKDIR /w", false),
        ("WORKDIR /w/sub", false),
        ("USER 1000:1000", true),
        ("EXPOSE [80/tcp 8000/udp 8001/udp]", true),
        ("VOLUME [/v1 /v2]", true),
        ("SHELL [/bin/ash -eo pipefail -c]", true),
        (r#"CMD ["/bin/ash" "-eo" "pipefail" "-c" "echo hi"]"#, true),
        (r#"ENTRYPOINT ["/e"]"#, true),
        ("STOPSIGNAL SIGUSR1", true),
        (
            "HEALTHCHECK {Test:[CMD-SHELL wget -q localhost] Interval:1m30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}",
            true,
        ),
        ("MAINTAINER someone", true),
    ];
    let got: Vec<(&str, bool)> = h.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    assert_eq!(got, want);
}

#[test]
fn entrypoint_resets_an_inherited_cmd() {
    let p = plan(
        "FROM busybox\nENTRYPOINT [\"/bin/echo\"]\n",
        &ConvertOptions::default(),
        &busybox(),
    )
    .unwrap();
    assert_eq!(p.image.config.unwrap().cmd, None);
}

#[test]
fn onbuild_triggers_of_the_base_run_first() {
    let images = busybox().with(
        "docker.io/library/parent:latest",
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "OnBuild": ["RUN echo triggered", "ENV FROM_TRIGGER=1"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }),
    );
    let p = plan(
        "FROM parent\nRUN echo mine\n",
        &ConvertOptions::default(),
        &images,
    )
    .unwrap();
    let names = reachable_names(&p);
    // BuildKit counts every trigger in the total, numbered or not.
    assert_eq!(
        names,
        [
            "[1/4] FROM docker.io/library/parent:latest",
            "[2/4] ONBUILD RUN echo triggered",
            "[3/4] RUN echo mine"
        ]
    );
    let c = p.image.config.unwrap();
    assert_eq!(c.on_build, None, "triggers are not inherited by children");
    assert!(c.env.unwrap().contains(&"FROM_TRIGGER=1".to_owned()));
}

#[test]
fn errors_point_at_their_line() {
    let images = busybox();
    let err = plan(
        "FROM busybox\nCOPY --from=$X a b\n",
        &ConvertOptions::default(),
        &images,
    )
    .unwrap_err();
    assert_eq!(err.location().unwrap().line, 2);
    let err = plan("FROM missing\n", &ConvertOptions::default(), &images).unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
    assert_eq!(err.location().unwrap().line, 1);
    let err = plan(
        "FROM --platform=linux/s390x busybox\n",
        &ConvertOptions::default(),
        &images,
    )
    .unwrap_err();
    assert!(err.to_string().contains("only the host platform"), "{err}");
    let opts = ConvertOptions {
        target: Some("nope".into()),
        ..ConvertOptions::default()
    };
    let err = plan("FROM busybox AS nop\n", &opts, &images).unwrap_err();
    assert!(err.to_string().contains("could not be found"), "{err}");
    assert_eq!(err.help(), Some("did you mean `nop`?"));
}

#[test]
fn scratch_images_get_a_path_and_the_image_source_is_keyed() {
    let p = plan(
        "FROM scratch\nCOPY a /\n",
        &ConvertOptions::default(),
        &busybox(),
    )
    .unwrap();
    let c = p.image.config.clone().unwrap();
    assert_eq!(
        c.env.unwrap(),
        [format!("PATH={}", kiln_build::convert::DEFAULT_PATH)]
    );
    assert_eq!(c.working_dir.as_deref(), Some("/"));
    assert!(p.graph.ids().any(|v| matches!(
        &*p.graph.vertex(v).op,
        KilnOp::Source(SourceOp::Context { include, .. }) if include == &["a".to_owned()]
    )));
}
