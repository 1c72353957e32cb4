//! The typed layer's behaviour beyond the fixtures.

use std::collections::HashMap;

use kiln_dockerfile::ir::{CacheSharing, MountType, parse_duration, parse_mount, parse_port};
use kiln_dockerfile::{Base, Dockerfile, InstructionKind, ShellOrExec};

fn parse(text: &str) -> Dockerfile {
    Dockerfile::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn stages_resolve_by_name_index_and_global_args() {
    let df = parse(
        "ARG BASE=alpine\nFROM $BASE AS Build\nFROM build AS test\nFROM scratch\nCOPY --from=BUILD /a /b\nCOPY --from=1 /c /d\nCOPY --from=nginx /e /f\n",
    );
    assert_eq!(df.stages[0].base, Base::Image("alpine".into()));
    assert_eq!(df.stages[0].name.as_deref(), Some("build"));
    assert_eq!(df.stages[0].name_as_written.as_deref(), Some("Build"));
    assert_eq!(df.stages[1].base, Base::Stage(0));
    assert_eq!(df.stages[2].base, Base::Scratch);
    let froms: Vec<Option<usize>> = df.stages[2]
        .instructions
        .iter()
        .map(|i| match &i.kind {
            InstructionKind::Copy(c) => c.from_stage,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(froms, [Some(0), Some(1), None]);
    assert_eq!(df.target(Some("TEST")), Some(1));
    assert_eq!(df.target(None), Some(2));
}

#[test]
fn build_args_override_global_defaults_in_from() {
    let df = parse("ARG V=1\nARG IMG=base:$V\nFROM $IMG\n");
    assert_eq!(df.stages[0].base, Base::Image("base:1".into()));
    let args = df.global_args_with(&HashMap::from([("V".into(), "2".into())]));
    assert_eq!(
        df.resolve_base(0, &args).unwrap(),
        Base::Image("base:2".into())
    );
}

#[test]
fn blank_base_after_expansion_is_an_error() {
    let df = parse("ARG IMG\nFROM ${IMG}\n");
    let err = df.resolve_base(0, &HashMap::new()).unwrap_err();
    assert!(err.message().contains("should not be blank"), "{err}");
    assert_eq!(err.location().line, 2);
}

#[test]
fn run_shell_and_exec_forms_and_heredocs() {
    let df = parse("FROM a\nRUN echo hi\nRUN [\"ls\", \"-l\"]\nRUN <<EOF\nx\nEOF\n");
    let runs: Vec<_> = df.stages[0]
        .instructions
        .iter()
        .map(|i| match &i.kind {
            InstructionKind::Run(r) => r.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(runs[0].command, ShellOrExec::Shell("echo hi".into()));
    assert_eq!(
        runs[1].command,
        ShellOrExec::Exec(vec!["ls".into(), "-l".into()])
    );
    assert_eq!(runs[2].heredocs[0].name, "EOF");
    assert_eq!(runs[2].heredocs[0].content, "x\n");
}

#[test]
fn onbuild_trigger_is_typed_and_keeps_its_text() {
    let df = parse("FROM a\nONBUILD RUN make install\n");
    let InstructionKind::Onbuild {
        trigger,
        expression,
    } = &df.stages[0].instructions[0].kind
    else {
        panic!()
    };
    assert_eq!(expression, "RUN make install");
    assert!(matches!(trigger.kind, InstructionKind::Run(_)));
}

#[test]
fn mounts_are_validated_and_defaulted() {
    let m = parse_mount("type=secret,id=aws").unwrap();
    assert_eq!(m.kind, MountType::Secret);
    assert_eq!(m.target.as_deref(), Some("/run/secrets/aws"));
    let m = parse_mount("type=secret,target=/root/.npmrc").unwrap();
    assert_eq!(m.id.as_deref(), Some(".npmrc"));
    let m = parse_mount("type=cache,target=/c,mode=0700,uid=1,gid=2,sharing=locked").unwrap();
    assert_eq!(
        (m.mode, m.uid, m.gid, m.sharing),
        (Some(0o700), Some(1), Some(2), Some(CacheSharing::Locked))
    );
    let m = parse_mount("target=/src,ro").unwrap();
    assert_eq!((m.kind, m.readonly), (MountType::Bind, true));
    let m = parse_mount("type=ssh").unwrap();
    assert_eq!(m.id.as_deref(), Some("default"));
    let m = parse_mount("type=tmpfs,target=/t,size=64m").unwrap();
    assert_eq!(m.size, Some(64 << 20));
    assert!(parse_mount("type=cache,target=/c,mode=999").is_err());
    assert!(
        parse_mount("type=tmpfs,target=/t,from=x")
            .unwrap_err()
            .contains("unexpected key `from`")
    );
    assert!(parse_mount("type=bind,target=/t,rw=maybe").is_err());
    assert!(
        parse_mount("type=cache,id=x")
            .unwrap_err()
            .contains("needs a target")
    );
}

#[test]
fn ports_and_durations() {
    let p = parse_port("8000-8010/UDP").unwrap();
    assert_eq!((p.start, p.end, p.proto), (8000, 8010, "udp"));
    assert_eq!(parse_port("80").unwrap().proto, "tcp");
    assert!(parse_port("70000").is_err());
    assert!(parse_port("90-80").is_err());
    assert!(parse_port("80/http").is_err());
    assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
    assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("s").is_err());
}

#[test]
fn unknown_instruction_suggests_the_closest() {
    let err = Dockerfile::parse(b"FROM a\nWROKDIR /x\n").unwrap_err();
    assert_eq!(err.help(), Some("did you mean `WORKDIR`?"));
    assert_eq!(
        (
            err.location().line,
            err.location().column,
            err.location().width
        ),
        (2, 1, 7)
    );
}

#[test]
fn error_in_continued_line_points_at_the_physical_line() {
    let err = Dockerfile::parse(b"FROM a\nRUN --network=none \\\n  --mount=type=cache,target=/x \\\n  --secuirty=insecure make\n").unwrap_err();
    assert!(err.message().contains("--secuirty"), "{err}");
    assert_eq!(err.help(), Some("did you mean `--security`?"));
    assert_eq!((err.location().line, err.location().column), (4, 3));
}
