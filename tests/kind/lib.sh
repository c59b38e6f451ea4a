# shellcheck shell=bash
# Helpers of run.sh, sourced (and tested by tests/tests/kind.rs).

# Prints the kustomize `images:` fields of an image reference: newName, then newTag or digest.
# The tag is what follows the last ':' of the last path component (a registry's :port is not a
# tag); without one, `latest`.
image_fields() {
  local ref="$1"
  case "$ref" in
    *@*) printf '    newName: %s\n    digest: "%s"\n' "${ref%%@*}" "${ref#*@}"; return ;;
  esac
  local last="${ref##*/}"
  case "$last" in
    *:*) printf '    newName: %s\n    newTag: "%s"\n' "${ref%:*}" "${last##*:}" ;;
    *) printf '    newName: %s\n    newTag: "latest"\n' "$ref" ;;
  esac
}
