# bash completion for procrun(1). Installed as
# <prefix>/share/bash-completion/completions/procrun; works without the
# bash-completion package too (`source` it from ~/.bashrc).

_procrun_subcommands=$'ps\nkill\nlogs\ngc\nhelp'

# Record ids from `procrun ps --json [--all]` (a JSON array of records),
# decoded by procrun itself: no jq needed, and ids are taken whole.
_procrun_ids() {
  local prog=$1
  shift
  "$prog" ps --json "$@" 2>/dev/null | "$prog" -e '
    local ok, t = pcall(require("procmon.json").decode, io.read("a"))
    if ok and type(t) == "table" then
      for _, r in ipairs(t) do
        if type(r) == "table" and r.id ~= nil then print(r.id) end
      end
    end' 2>/dev/null
}

_procrun() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local prog=${COMP_WORDS[0]} sub=${COMP_WORDS[1]} IFS=$'\n'
  # The procrun being completed answers for its own state dir; `~/x` is
  # not expanded in COMP_WORDS.
  [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
  command -v -- "$prog" >/dev/null 2>&1 || prog=procrun
  COMPREPLY=()
  if ((COMP_CWORD == 1)); then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W $'-e\n--version\n--help\n--' -- "$cur"))
    else
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -W "$_procrun_subcommands" -- "$cur")
                 $(compgen -f -X '!*.lua' -- "$cur") $(compgen -d -- "$cur"))
    fi
    return 0
  fi
  case $sub in
    ps)
      COMPREPLY=($(compgen -W $'--all\n--json' -- "$cur")) ;;
    kill)
      if ((COMP_CWORD == 2)); then
        COMPREPLY=($(compgen -W "$(_procrun_ids "$prog")" -- "$cur"))
      elif ((COMP_CWORD == 3)); then
        COMPREPLY=($(compgen -W $'TERM\nINT\nHUP\nKILL\nQUIT\nUSR1\nUSR2\nSTOP\nCONT' \
                     -- "${cur#SIG}"))
      fi ;;
    logs)
      if [[ $prev == -n ]]; then
        return 0
      elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W $'-f\n-n' -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$(_procrun_ids "$prog" --all)" -- "$cur"))
      fi ;;
    help)
      ((COMP_CWORD == 2)) &&
        COMPREPLY=($(compgen -W "$_procrun_subcommands" -- "$cur")) ;;
    gc) ;;
    -e)
      ((COMP_CWORD > 2)) && compopt -o default 2>/dev/null ;;
    *)
      # A script's own arguments: files.
      compopt -o default 2>/dev/null ;;
  esac
  return 0
}

complete -F _procrun procrun
