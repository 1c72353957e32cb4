FROM corpus/busybox
COPY keep.txt /dst/
COPY sub /dst/sub/
