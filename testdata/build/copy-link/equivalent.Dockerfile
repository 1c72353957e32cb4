FROM corpus/busybox
COPY f /linked/
COPY --chown=nobody:nogroup dir /ldir
COPY f /new/parents/file
