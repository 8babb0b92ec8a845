# Shared by the test scripts. wait_for FILE PATTERN SECONDS: waits up to
# SECONDS for a line matching PATTERN (grep) in FILE; 0 if one appeared.
wait_for() {
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
