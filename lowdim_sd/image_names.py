"""Which file names are pictures, known without PIL: ``lowdim show`` and other header readers run on a core
install, where the sd extra (and with it PIL) is absent."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
