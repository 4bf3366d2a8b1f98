# Local images (filled in by the image step).
ensure_images() { :; }
