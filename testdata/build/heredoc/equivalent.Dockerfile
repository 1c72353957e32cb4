FROM corpus/busybox
ARG NAME=world
RUN echo one > /heredoc-one && echo "two $NAME" > /heredoc-two
RUN echo tabs > /tabbed
RUN echo "hello $NAME" > /etc/greeting
RUN echo 'no $NAME expansion' > /literal
RUN mkdir /multi && echo a > /multi/A && echo b > /multi/B
