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
  # The subcommand's positional arguments before the cursor, and its --dir
  # (a monitor directory: the ids come from there).
  local i npos=0 dir=()
  for ((i = 2; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --dir) ((i++)); dir=(--dir "${COMP_WORDS[i]}") ;;
      -n) ((i++)) ;;
      -*) ;;
      *) ((npos++)) ;;
    esac
  done
  if [[ $prev == --dir ]]; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -d -- "$cur"))
    return 0
  fi
  case $sub in
    ps)
      COMPREPLY=($(compgen -W $'--all\n-a\n--json\n--dir' -- "$cur")) ;;
    kill)
      if [[ $cur == -* && $cur != -[0-9]* ]]; then
        COMPREPLY=($(compgen -W '--dir' -- "$cur"))
      elif ((npos == 0)); then
        COMPREPLY=($(compgen -W "$(_procrun_ids "$prog" "${dir[@]}")" -- "$cur"))
      elif ((npos == 1)); then
        COMPREPLY=($(compgen -W $'TERM\nINT\nHUP\nKILL\nQUIT\nUSR1\nUSR2\nSTOP\nCONT' \
                     -- "${cur#SIG}"))
      fi ;;
    logs)
      if [[ $prev == -n ]]; then
        return 0
      elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W $'-f\n--follow\n-n\n--dir' -- "$cur"))
      elif ((npos == 0)); then
        COMPREPLY=($(compgen -W "$(_procrun_ids "$prog" --all "${dir[@]}")" -- "$cur"))
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
