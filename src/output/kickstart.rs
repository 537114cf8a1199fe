//! Kickstart files (el7, el9) rendered from kickstart/*.ks.j2.
