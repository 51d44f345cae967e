"""pyadr.cli — the command lines behind `pyadr <command>` (dispatched by pyadr/__main__.py).

  train      `pyadr train | compare | summary | plot | evaluate` (the standalone trainer)
  bench      `pyadr bench`: kernel timing and error-vs-rc tables on real Fashion-MNIST layers
  profile    `pyadr profile`: where a training step's time goes, exact vs reuse
  export     `pyadr export`: trainer checkpoint or CifarNet arrays -> edge weights file

Layer 5, the top: a module here may import anything below it (pyadr.train, pyadr.torch,
pyadr.export, pyadr.nn, the array API) and nothing imports it but pyadr/__main__.py.
Each command's main(argv) returns an exit code; importing a command module has no side effects.
"""
