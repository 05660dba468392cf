//! Every facility and prelude name the facade promises resolves to the facility crate's
//! own item (a compile-time check, plus a run that uses each path once).

use std::any::TypeId;

#[test]
fn shm_reexports_are_the_facility_items() {
    assert_eq!(
        TypeId::of::<ptools::shm::ShmCfg>(),
        TypeId::of::<ptools_shm::ShmCfg>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmSet>(),
        TypeId::of::<ptools_shm::ShmSet>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmArray<u8>>(),
        TypeId::of::<ptools_shm::ShmArray<u8>>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmError>(),
        TypeId::of::<ptools_shm::ShmError>()
    );
    let _: fn(&[ptools::prelude::ShmCfg], &ptools::prelude::Prefix) -> ptools::shm::Result<()> =
        ptools::prelude::unlink_shm;
    let _ = ptools::prelude::list_shm;
    let _ = ptools::prelude::remove_stale_shm;
    let _ = ptools::prelude::ShmBuilder::new();
    fn elem<T: ptools::prelude::ShmElem>() {}
    elem::<f64>();
}
