#!/usr/bin/env bash
# Install a minimal LaTeX (pdflatex + booktabs) so tests/test_report.py can compile the table
# that `bench report --format latex` writes. Debian packages only; idempotent: does nothing when
# pdflatex and booktabs.sty are already there.
#   texlive-latex-base         pdflatex, the LaTeX kernel, fonts (Computer Modern)
#   texlive-latex-recommended  booktabs.sty (and little else we need)
set -euo pipefail

have_latex() {
    command -v pdflatex >/dev/null 2>&1 && command -v kpsewhich >/dev/null 2>&1 \
        && [ -n "$(kpsewhich booktabs.sty 2>/dev/null)" ]
}

if have_latex; then
    echo "setup-latex: pdflatex and booktabs already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when they are missing (a fresh container).
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends \
    texlive-latex-base texlive-latex-recommended >/dev/null

have_latex || { echo "setup-latex: pdflatex or booktabs.sty still missing" >&2; exit 1; }
echo "setup-latex: installed $(pdflatex --version | head -1)"
