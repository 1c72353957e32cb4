//! A generated Dockerfile of any length, for the parser benchmark.
//!
//! The text cycles through every instruction and the forms that cost the
//! parser most: line continuations with comments inside them, heredocs,
//! flags, JSON arrays, multi-pair ENV/LABEL, variables. Stage names and
//! `COPY --from` references stay valid, so the typed IR accepts it too.

/// A Dockerfile of exactly `instructions` instructions (heredoc bodies and
/// continuation lines not counted), at least one (the first `FROM`).
pub fn generate(instructions: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut n = 1; // the global ARG above
    let mut stage = 0usize;
    while n < instructions.max(2) {
        let i = n;
        let text = match i % 20 {
            0 | 1 => {
                stage += 1;
                format!("FROM ${{BASE}} AS stage{stage}\n")
            }
            2 => format!(
                "RUN --mount=type=cache,target=/root/.cache,sharing=locked \\\n    apt-get update && \\\n    # a comment inside the continuation\n    apt-get install -y pkg{i} \\\n    && rm -rf /var/lib/apt/lists/*\n"
            ),
            3 => format!("ENV PATH=/opt/bin{i}:$PATH LANG=C.UTF-8 N{i}=\"value {i}\"\n"),
            4 => format!(
                "LABEL org.opencontainers.image.title=\"bench {i}\" version={i} description='a longer label value'\n"
            ),
            5 => format!("COPY --chown=1000:1000 --chmod=0644 src/{i}/*.rs ./src/{i}/\n"),
            6 => format!("ADD --checksum=sha256:{i:064x} https://example.com/{i}.tar.gz /tmp/\n"),
            7 => format!("RUN <<EOF\nset -e\necho \"step {i} $HOME\"\nmake -j4 target{i}\nEOF\n"),
            8 => format!("WORKDIR /src/{i}\n"),
            9 => format!("ARG VERSION{i}=1.{i}.0\n"),
            10 => format!("EXPOSE {} 443/tcp 53/udp\n", 8000 + i % 1000),
            11 => format!("USER {}:{}\n", 1000 + i % 100, 1000 + i % 100),
            12 => "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1\n".to_owned(),
            13 => format!("CMD [\"/usr/bin/app{i}\", \"--flag\", \"value\"]\n"),
            14 => format!("ENTRYPOINT [\"/usr/bin/entry{i}\"]\n"),
            15 => format!("VOLUME /data{i} /logs{i}\n"),
            16 if stage > 1 => format!("COPY --from=stage{} /out/{i} /in/{i}\n", stage - 1),
            17 => "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n".to_owned(),
            18 => format!("ONBUILD RUN echo child {i}\n"),
            _ => format!("RUN echo ${{VERSION{}:-none}} step {i} > /tmp/f{i}\n", i.saturating_sub(10)),
        };
        out.push_str(&text);
        n += 1;
    }
    out
}

/// A generated Dockerfile of at least `bytes` bytes (whole instructions).
pub fn generate_bytes(bytes: usize) -> String {
    // Grow the instruction count until the text is large enough.
    let mut count = 64;
    loop {
        let text = generate(count);
        if text.len() >= bytes {
            return text;
        }
        let per = text.len() / count;
        count = (bytes / per.max(1)).max(count + 64) + 16;
    }
}
