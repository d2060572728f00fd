//! In a sandbox with a network of its own the platform's API is not on the network: the
//! launcher binds a UNIX socket into the sandbox instead. The runner listens on the
//! sandbox's own loopback and passes each connection on to that socket, so that it, and
//! Terraform's http state backend, keep using a plain `http://` URL.

use std::path::PathBuf;

use tokio::net::{TcpListener, UnixStream};

/// Starts forwarding and answers the URL to use for the API.
pub async fn forward(socket: PathBuf) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut api) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut connection, &mut api).await;
                }
            });
        }
    });
    Ok(url)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpStream, UnixListener};

    #[tokio::test]
    async fn connections_reach_the_socket_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let api = UnixListener::bind(&socket).unwrap();
        let url = super::forward(socket).await.unwrap();
        let address = url.strip_prefix("http://").unwrap().to_string();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(b"ping").await.unwrap();
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer).await.unwrap();
            answer
        });
        let (mut served, _) = api.accept().await.unwrap();
        let mut asked = [0u8; 4];
        served.read_exact(&mut asked).await.unwrap();
        assert_eq!(&asked, b"ping");
        served.write_all(b"pong").await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }
}
