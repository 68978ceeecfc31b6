"""Multi-coil MRI reconstruction: operators, sampling masks, coil maps, data packing (MBDL, Park et al.)."""
