/* Links Open MPI; only CMPI/shim.c includes mpi.h. */
