"""Energy-based models and the tools of the score-based lecture's first third.

* :mod:`~difflab.ebm.mcmc`: random-walk Metropolis, unadjusted and Metropolis-adjusted Langevin, Hamiltonian Monte
  Carlo over any log-density or energy;
* :mod:`~difflab.ebm.score_matching`: exact, sliced and denoising score matching;
* :mod:`~difflab.ebm.contrastive`: contrastive divergence with short-run and persistent chains (a replay buffer);
* :mod:`~difflab.ebm.energy_denoiser`: an energy's score as a :class:`~difflab.denoiser.Denoiser`, so the diffusion
  samplers run on it;
* :mod:`~difflab.ebm.rbm`: a binary restricted Boltzmann machine, CD-k, persistent CD, annealed importance sampling;
* :mod:`~difflab.ebm.ising`: denoising a binary image with an Ising model (ICM, Gibbs);
* :mod:`~difflab.ebm.products`: products (AND) and mixtures (OR) of energies.

The networks (energy MLP, energy conv net) are in :mod:`difflab.models.energy`; training them runs in the one loop
(:mod:`difflab.training.ebm`).
"""
