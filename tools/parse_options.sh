# Source me after setting defaults: turns `--name value` / `--name=value` arguments into shell
# variables for names that already have a value (`--stop_stage 5` sets stop_stage=5).
# `--help` prints the settable names with their current values. An unknown name is an error.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Usage: $0 [--name value ...]. Options (current values):"
      for v in ${_options:-}; do printf '  --%s %s\n' "$v" "${!v}"; done
      exit 0 ;;
    --*=*) _name="${1%%=*}"; _name="${_name#--}"; _value="${1#*=}"; shift ;;
    --*) _name="${1#--}"; [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
         _value="$2"; shift 2 ;;
    *) echo "$0: unexpected argument '$1'" >&2; exit 1 ;;
  esac
  _name="${_name//-/_}"
  if [ -z "${!_name+x}" ]; then echo "$0: unknown option --$_name" >&2; exit 1; fi
  printf -v "$_name" '%s' "$_value"
done
unset _name _value
