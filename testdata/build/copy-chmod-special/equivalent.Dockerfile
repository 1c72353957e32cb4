FROM corpus/busybox
COPY f /setuid
COPY f /setgid
COPY f /sticky
RUN chmod 4755 /setuid && chmod 2711 /setgid && chmod 1777 /sticky
