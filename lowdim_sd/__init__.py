"""lowdim_sd: the Stable Diffusion 1.x backend for lowdim."""
