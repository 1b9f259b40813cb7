//! Files and the admin's prompt: `/send NAME FILE` reaches a member whole; a file sent to the
//! admin is saved in the files folder under a safe name, and the prompt (hence the transcript)
//! says its name, size and SHA-256, never its content.

mod common;

use common::files::*;
use common::*;

#[test]
fn the_prompt_sends_and_saves_files() {
    let dir = std::env::temp_dir().join(format!(
        "dyspatcher-prompt-files-{}",
        dyspatcher::crypto::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let outgoing = dir.join("report.pdf");
    let data = content(200_000, 42);
    std::fs::write(&outgoing, &data).unwrap();
    let saved_dir = dir.join("saved");
    let server = start(|c| c.files_dir = saved_dir.clone());
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(1);
        let mut b = server.join("bobby", &k[0]).await;
        server.output_containing("bobby").await;
        // The admin sends a file to bob.
        server.prompt(&format!("/send bobby {}", outgoing.display()));
        assert_eq!(
            receive(&mut b).await,
            Got::File("report.pdf".into(), sha(&data))
        );
        let line = server.output_containing("sent report.pdf").await;
        assert!(line.contains(&sha(&data)), "{line}");
        // Bob sends one to the admin, with a hostile name.
        let back = content(70_000, 7);
        let mut sending = accepted(offer(&mut b, "ADMIN", "../../.profile", back.clone()).await);
        pump(&mut b, &mut sending).await.unwrap();
        let line = server.output_containing("received ../../.profile").await;
        assert!(
            line.contains(&sha(&back)) && line.contains("68.4 KiB"),
            "{line}"
        );
        let saved = saved_dir.join("profile");
        assert!(line.contains(&saved.display().to_string()), "{line}");
        assert_eq!(std::fs::read(&saved).unwrap(), back);
        // A file that does not exist, and nobody of that name: told, nothing sent.
        server.prompt("/send bobby /nonexistent/file");
        server
            .output_containing("not sent: /nonexistent/file")
            .await;
        server.prompt(&format!("/send nobody {}", outgoing.display()));
        server
            .output_containing("not sent: no member named nobody")
            .await;
        server.prompt("/cancel");
        server
            .output_containing("no file is being sent or received")
            .await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
