FROM corpus/busybox
COPY f /linked/
COPY --chown=65534:65534 dir /ldir
COPY f /new/parents/file
