//! What every KeyRing adapter must do.

use envplane_core::ports::{KeyRing, KeyRingError};
use envplane_core::secrecy::{ExposeSecret, SecretString};

pub async fn conformance(ring: &dyn KeyRing) {
    let secret = SecretString::from("correct horse battery staple");

    let sealed = ring.seal("org_a", &secret).await.expect("seal");
    assert!(
        !sealed.contains("correct horse"),
        "sealed value shows the plaintext"
    );
    let opened = ring.open("org_a", &sealed).await.expect("open");
    assert_eq!(opened.expose_secret(), secret.expose_secret());

    let again = ring.seal("org_a", &secret).await.expect("seal again");
    assert_ne!(sealed, again, "sealing must be randomized");

    assert!(
        matches!(ring.open("org_b", &sealed).await, Err(KeyRingError::Unseal)),
        "a value sealed for one organization opened as another's"
    );

    let mut tampered = sealed.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(matches!(
        ring.open("org_a", &tampered).await,
        Err(KeyRingError::Unseal)
    ));
    assert!(matches!(
        ring.open("org_a", "not sealed at all").await,
        Err(KeyRingError::Unseal)
    ));

    let empty = ring
        .seal("org_a", &SecretString::from(""))
        .await
        .expect("seal empty");
    assert_eq!(
        ring.open("org_a", &empty).await.unwrap().expose_secret(),
        ""
    );
}
