FROM corpus/busybox
COPY a/b/1.txt a/b/2.txt /dst/a/b/
COPY c/d.txt /dst/c/
COPY x/y/z.txt /pivot/y/
