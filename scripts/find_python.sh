# Sourced by the set-up scripts. find_python X.Y prints the path of a CPython X.Y
# found on PATH, through pyenv or in the usual system places; fails if there is none.
find_python() {
  local version=$1 candidates=("python$1")
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)/versions/$version"*/bin/"python$version")
  fi
  candidates+=("/usr/bin/python$version" "/usr/local/bin/python$version")
  for py in "${candidates[@]}"; do
    if [ -x "$(command -v "$py" 2>/dev/null)" ] &&
       "$py" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$version'" 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}
