//! The kernel's part of the 900 KB paths, measured beside the SHA-256 pass: the CPU a thread
//! spends reading an event's bytes from a loopback TCP socket into a buffer that is already big
//! enough, and writing a body to one until the peer has taken all of it. No program that
//! receives the event through the Runtime API and uploads the body to S3 over a socket pays
//! less, whatever its HTTP client, JSON reader or SDK; the whole invocation's figures are read
//! against it. Over loopback the sender's thread also carries the delivery into the receiver's
//! socket, as the ingest's does for its upload to moto (and the Runtime API stand-in's for the
//! event the ingest reads).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use crate::procfs;

/// One round's CPU (this thread), ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    /// Reading `event` bytes from the socket.
    pub read_ns: f64,
    /// Writing `body` bytes to the socket, until the peer has read them and said so (one byte).
    pub write_ns: f64,
}

/// A kept-alive loopback connection to a peer thread that sends the event on request and reads
/// the body back, as the Runtime API and moto do for the ingest.
pub struct SocketFloor {
    conn: TcpStream,
    peer: Option<JoinHandle<io::Result<()>>>,
    body: Vec<u8>,
    /// The event's length: what each round reads into.
    buf: Vec<u8>,
}

impl SocketFloor {
    pub fn start(event: Vec<u8>, body: Vec<u8>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let conn = TcpStream::connect(listener.local_addr()?)?;
        let (mut theirs, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        theirs.set_nodelay(true)?;
        let body_len = body.len();
        let buf = vec![0u8; event.len()];
        let peer = std::thread::spawn(move || -> io::Result<()> {
            let mut sink = vec![0u8; body_len];
            let mut go = [0u8; 1];
            // Until the measuring side closes the connection.
            while theirs.read(&mut go)? == 1 {
                theirs.write_all(&event)?;
                theirs.read_exact(&mut sink)?;
                theirs.write_all(&[1])?;
            }
            Ok(())
        });
        Ok(Self {
            conn,
            peer: Some(peer),
            body,
            buf,
        })
    }

    /// One round: the event read, then the body written.
    pub fn round(&mut self) -> io::Result<Round> {
        self.conn.write_all(&[0])?;
        let t0 = procfs::thread_cpu();
        self.conn.read_exact(&mut self.buf)?;
        let t1 = procfs::thread_cpu();
        self.conn.write_all(&self.body)?;
        let mut ack = [0u8; 1];
        self.conn.read_exact(&mut ack)?;
        let t2 = procfs::thread_cpu();
        Ok(Round {
            read_ns: (t1 - t0).as_nanos() as f64,
            write_ns: (t2 - t1).as_nanos() as f64,
        })
    }

    /// The event bytes the last round read.
    pub fn last_event(&self) -> &[u8] {
        &self.buf
    }

    /// Closes the connection and waits for the peer.
    pub fn finish(mut self) -> io::Result<()> {
        self.conn.shutdown(std::net::Shutdown::Both)?;
        match self.peer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("socket floor peer panicked")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_move_every_byte_both_ways_and_cost_cpu() {
        let event: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let body = vec![7u8; 200_000];
        let mut floor = SocketFloor::start(event.clone(), body).unwrap();
        for _ in 0..3 {
            let r = floor.round().unwrap();
            assert_eq!(floor.last_event(), &event[..]);
            assert!(r.read_ns > 0.0 && r.write_ns > 0.0, "{r:?}");
        }
        floor.finish().unwrap();
    }
}
