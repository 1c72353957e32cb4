# git keeps neither empty directories nor modes other than 0644/0755.
mkdir -p dir/empty
chmod 700 dir/sub/deeper
chmod 600 dir/a
chmod 2775 dir/sub
