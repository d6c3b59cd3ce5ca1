//! The tutorial's "Intertask Communication" section: a producer and two
//! consumers over a `Queue`, with `task_done` and `join` telling the producer
//! when every item has been handled.
//!
//! ```text
//! $ cargo run --example intertask_communication
//! consumer 1 got 0
//! consumer 2 got 1
//! ...
//! Producer done
//! ```

use std::rc::Rc;

use curio::Queue;

fn producer(queue: Rc<Queue<u32>>) -> curio::Result<()> {
    for n in 0..10 {
        queue.put(n)?;
    }
    queue.join()?;
    println!("Producer done");
    Ok(())
}

fn consumer(id: u32, queue: Rc<Queue<u32>>) -> curio::Result<()> {
    loop {
        let item = queue.get()?;
        println!("consumer {id} got {item}");
        curio::sleep(std::time::Duration::from_millis(100))?; // pretend to work
        queue.task_done()?;
    }
}

fn main() -> curio::Result<()> {
    curio::run(|| {
        let q = Rc::new(Queue::new(0));
        let prod = {
            let q = q.clone();
            curio::spawn(move || producer(q))
        };
        let consumers: Vec<_> = (1..=2)
            .map(|id| {
                let q = q.clone();
                curio::spawn(move || consumer(id, q))
            })
            .collect();
        prod.join_flatten()?;
        for c in &consumers {
            c.cancel()?;
        }
        Ok(())
    })
}
